"""Aggregation of decisions over conditions, observers and datasets, as model-vs-human's benchmark
(Geirhos et al. 2021) and the paper's Fig. 12 (OOD accuracy, observed consistency, error consistency).

- Per dataset and condition, for every (observer, human) pair on the trials both answered:
  kappa, observed and expected consistency, both accuracies, squared accuracy difference
  (:func:`pairwise_consistency`). Human-human pairs (i < j) give the human baseline.
- Excluded conditions (:func:`excluded_conditions`): the undistorted control of every parametric set
  (100 % contrast, colour, sigma = 0, ...) and every condition whose mean human accuracy is at most
  ``min_human_accuracy`` = 0.2 (kappa is not meaningful near chance). From the human files this
  reproduces model-vs-human's fixed exclusion list exactly, low-pass sigma = 15 included, where humans
  are at exactly 0.200 -- hence "at most", not "below".
- :func:`summarise`: per observer, the mean over conditions, then over humans, then over datasets
  (consistencies, accuracy difference); OOD accuracy = accuracy pooled over a dataset's kept trials,
  then the mean over datasets. The human row averages all human pairs the same way.
"""

from __future__ import annotations

from itertools import combinations
from typing import Dict, List, Optional

import numpy as np
import pandas as pd

from maskdistill.probes.decisions.consistency import Consistency, consistency_from_correct
from maskdistill.probes.decisions.responses import condition_key, is_human

# The undistorted condition of each parametric dataset, in model-vs-human's spelling of its files.
CONTROL_CONDITIONS: Dict[str, str] = {
    "colour": "cr",
    "contrast": "c100",
    "high-pass": "inf",
    "low-pass": "0",
    "phase-scrambling": "0",
    "power-equalisation": "0",
    "false-colour": "true",
    "rotation": "0",
    "eidolonI": "1-10-10",
    "eidolonII": "1-3-10",
    "eidolonIII": "1-0-10",
    "uniform-noise": "0.0",
}
NONPARAMETRIC = ("sketch", "stylized", "edge", "silhouette", "cue-conflict")
DATASETS = tuple(CONTROL_CONDITIONS) + NONPARAMETRIC  # the 17 OOD datasets
MIN_HUMAN_ACCURACY = 0.2


def is_control(dataset: str, condition: object) -> bool:
    c = CONTROL_CONDITIONS.get(str(dataset))
    return c is not None and condition_key(c) == condition_key(condition)


def _with_keys(responses: pd.DataFrame) -> pd.DataFrame:
    if "dataset" not in responses.columns or "image_id" not in responses.columns:
        raise ValueError("response tables need 'dataset' and 'image_id' columns (use read_responses / make_responses).")
    return responses.assign(
        cond=responses["condition"].map(condition_key), correct=(responses["object_response"] == responses["category"])
    )


def accuracy_table(responses: pd.DataFrame) -> pd.DataFrame:
    """Accuracy per observer, dataset and condition: ``subj, dataset, condition, accuracy, n_trials``."""
    df = _with_keys(responses)
    g = df.groupby(["subj", "dataset", "cond"], sort=True)
    out = g.agg(condition=("condition", "first"), accuracy=("correct", "mean"), n_trials=("correct", "size"))
    return out.reset_index().drop(columns="cond")


def human_accuracy(humans: pd.DataFrame) -> pd.DataFrame:
    """Mean over human observers of each one's accuracy: ``dataset, condition, human_accuracy, n_humans``."""
    acc = accuracy_table(humans.loc[humans["subj"].map(is_human)])
    acc = acc.assign(cond=acc["condition"].map(condition_key))
    g = acc.groupby(["dataset", "cond"], sort=True)
    out = g.agg(condition=("condition", "first"), human_accuracy=("accuracy", "mean"), n_humans=("subj", "nunique"))
    return out.reset_index().drop(columns="cond")


def excluded_conditions(
    humans: Optional[pd.DataFrame], datasets: Optional[List[str]] = None, min_human_accuracy: float = MIN_HUMAN_ACCURACY
) -> pd.DataFrame:
    """``dataset, condition, reason, human_accuracy`` of the conditions left out of the summaries."""
    rows = []
    for ds in datasets or []:
        if ds in CONTROL_CONDITIONS:
            rows.append(
                {"dataset": ds, "condition": CONTROL_CONDITIONS[ds], "reason": "control", "human_accuracy": np.nan}
            )
    if humans is not None and len(humans):
        for r in human_accuracy(humans).itertuples(index=False):
            if is_control(r.dataset, r.condition):
                rows = [x for x in rows if not (x["dataset"] == r.dataset and x["reason"] == "control")]
                rows.append(
                    {
                        "dataset": r.dataset,
                        "condition": r.condition,
                        "reason": "control",
                        "human_accuracy": r.human_accuracy,
                    }
                )
            elif r.human_accuracy <= min_human_accuracy + 1e-12:
                rows.append(
                    {
                        "dataset": r.dataset,
                        "condition": r.condition,
                        "reason": f"human accuracy <= {min_human_accuracy:g}",
                        "human_accuracy": r.human_accuracy,
                    }
                )
    return pd.DataFrame(rows, columns=["dataset", "condition", "reason", "human_accuracy"])


def _is_excluded(df: pd.DataFrame, excluded: Optional[pd.DataFrame]) -> pd.Series:
    if excluded is None or len(excluded) == 0:
        return pd.Series(False, index=df.index)
    keys = set(zip(excluded["dataset"].astype(str), excluded["condition"].map(condition_key)))
    return pd.Series([(d, condition_key(c)) in keys for d, c in zip(df["dataset"], df["condition"])], index=df.index)


def drop_excluded(responses: pd.DataFrame, excluded: Optional[pd.DataFrame]) -> pd.DataFrame:
    """The trials of ``responses`` (or rows of a pairs table) outside the excluded conditions."""
    return responses.loc[~_is_excluded(responses, excluded)]


def dataset_accuracy(responses: pd.DataFrame, excluded: Optional[pd.DataFrame] = None) -> pd.DataFrame:
    """Accuracy pooled over each dataset's kept trials: ``subj, dataset, accuracy, n_trials``."""
    r = _with_keys(drop_excluded(responses, excluded))
    g = r.groupby(["subj", "dataset"], sort=True)["correct"]
    return pd.concat([g.mean().rename("accuracy"), g.size().rename("n_trials")], axis=1).reset_index()


PAIR_COLUMNS = (
    "observer",
    "human",
    "dataset",
    "condition",
    "kappa",
    "observed",
    "expected",
    "accuracy_observer",
    "accuracy_human",
    "accuracy_difference",
    "n_trials",
)


def _pair_row(observer: str, human: str, dataset: str, condition: str, c: Consistency) -> Dict[str, object]:
    return {
        "observer": observer,
        "human": human,
        "dataset": dataset,
        "condition": condition,
        "kappa": c.kappa,
        "observed": c.observed,
        "expected": c.expected,
        "accuracy_observer": c.accuracy_a,
        "accuracy_human": c.accuracy_b,
        "accuracy_difference": (c.accuracy_a - c.accuracy_b) ** 2,
        "n_trials": c.n_trials,
    }


def _dataset_pairs(ds: str, h_ds: pd.DataFrame, o_ds: pd.DataFrame, human_pairs: bool) -> List[Dict[str, object]]:
    """The pairs rows of dataset ``ds``: its humans ``h_ds`` and other observers ``o_ds`` (with keys)."""
    names = {k: v for k, v in zip(h_ds["cond"], h_ds["condition"])}
    wide_h = h_ds.pivot_table(index=["cond", "image_id"], columns="subj", values="correct", aggfunc="first")
    wide_o = (
        o_ds.pivot_table(index=["cond", "image_id"], columns="subj", values="correct", aggfunc="first")
        if len(o_ds)
        else None
    )
    hs = list(wide_h.columns)
    pairs = [(wide_o, o, h) for o in (wide_o.columns if wide_o is not None else []) for h in hs]
    if human_pairs:
        pairs += [(wide_h, a, b) for a, b in combinations(hs, 2)]
    rows = []
    for cond in sorted(wide_h.index.get_level_values(0).unique()):
        hc = wide_h.xs(cond, level=0)
        for src, o, h in pairs:
            if cond not in src.index.get_level_values(0):
                continue
            oc = src.xs(cond, level=0)[o].dropna()
            both = oc.index.intersection(hc[h].dropna().index)
            if len(both) == 0:
                continue
            c = consistency_from_correct(oc.loc[both].to_numpy(bool), hc[h].loc[both].to_numpy(bool))
            rows.append(_pair_row(o, h, ds, names[cond], c))
    return rows


def pairwise_consistency(
    observers: Optional[pd.DataFrame], humans: pd.DataFrame, human_pairs: bool = True
) -> pd.DataFrame:
    """Tidy pairs table: ``observer, human, dataset, condition, kappa, observed, expected, accuracy_observer,
    accuracy_human, accuracy_difference, n_trials`` for every observer in ``observers`` against every human,
    and (``human_pairs``) every human pair i < j (observer = the first human). Each pair uses the trials
    both answered (a partial stimulus copy is normal)."""
    hum = _with_keys(humans.loc[humans["subj"].map(is_human)])
    obs = _with_keys(observers) if observers is not None and len(observers) else hum.iloc[:0]
    rows = []
    for ds in sorted(hum["dataset"].unique()):
        rows += _dataset_pairs(ds, hum.loc[hum["dataset"] == ds], obs.loc[obs["dataset"] == ds], human_pairs)
    return pd.DataFrame(rows, columns=list(PAIR_COLUMNS))


def summarise(pairs: pd.DataFrame, responses: pd.DataFrame, excluded: Optional[pd.DataFrame] = None) -> pd.DataFrame:
    """Fig. 12 table: one row per observer (models by name, humans pooled as ``"humans"``) with
    ``ood_accuracy, observed_consistency, error_consistency, accuracy_difference, n_datasets``."""
    p = drop_excluded(pairs, excluded)
    p = p.assign(group=np.where(p["observer"].map(is_human), "humans", p["observer"]))
    metrics = {
        "kappa": "error_consistency",
        "observed": "observed_consistency",
        "accuracy_difference": "accuracy_difference",
    }
    # mean over conditions, then humans (or human pairs), then datasets
    per = p.groupby(["group", "observer", "human", "dataset"], sort=True)[list(metrics)].mean()
    per = per.groupby(["group", "dataset"]).mean().groupby("group").mean().rename(columns=metrics)
    r = _with_keys(drop_excluded(responses, excluded))
    r = r.assign(group=np.where(r["subj"].map(is_human), "humans", r["subj"]))
    acc = r.groupby(["group", "dataset"])["correct"].mean()  # humans: all human trials pooled
    ood = acc.groupby("group").mean().rename("ood_accuracy")
    n_ds = acc.groupby("group").size().rename("n_datasets")
    out = pd.concat([ood, per, n_ds], axis=1).reset_index().rename(columns={"index": "observer", "group": "observer"})
    return out[
        ["observer", "ood_accuracy", "observed_consistency", "error_consistency", "accuracy_difference", "n_datasets"]
    ]


__all__ = [
    "CONTROL_CONDITIONS",
    "DATASETS",
    "MIN_HUMAN_ACCURACY",
    "NONPARAMETRIC",
    "PAIR_COLUMNS",
    "accuracy_table",
    "dataset_accuracy",
    "drop_excluded",
    "excluded_conditions",
    "human_accuracy",
    "is_control",
    "pairwise_consistency",
    "summarise",
]
