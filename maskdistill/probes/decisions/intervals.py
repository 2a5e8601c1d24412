"""Bootstrap intervals of the decision numbers (paper Figs. 8a, 11, 12): shape bias and its
fractions, accuracies and error consistency, resampled over the model's trials (stimuli) with
:class:`~maskdistill.probes.core.intervals.Bootstrap`. The trials are the rows of the model's response
table in evaluation order, so two models shown the same stimuli in the same order get the same
resamples (a paired bootstrap of their difference). Every number is a ratio of weighted sums over
trials, so a replicate is the same formula with trial ``i`` counted ``c_ri`` times.
"""

from __future__ import annotations

import warnings
from typing import Dict, List, Sequence

import numpy as np
import pandas as pd

from maskdistill.probes.core.intervals import Bootstrap
from maskdistill.probes.decisions.responses import condition_key, is_human
from maskdistill.probes.decisions.shape_bias import texture_category


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)


def shape_bias_replicates(resp: pd.DataFrame, categories: Sequence[str], boot: Bootstrap) -> Dict[str, np.ndarray]:
    """``{metric: (B, K)}`` for shape_bias, fraction_shape, fraction_texture and accuracy of the
    categories ``categories`` (``"all"`` = every trial), in that order; trials = rows of ``resp``."""
    names = resp["image_id"] if "image_id" in resp.columns else resp["imagename"]
    cat = resp["category"].to_numpy()
    decision = resp["object_response"].to_numpy()
    texture = names.map(texture_category).to_numpy()
    conflict = cat != texture
    masks = np.stack([np.ones(len(resp), bool) if c == "all" else cat == c for c in categories], axis=1)  # (n, K)
    parts = [
        conflict & (decision == cat),  # shape decisions
        conflict & (decision == texture),  # texture decisions
        conflict,
        decision == cat,  # correct (over all trials)
        np.ones(len(resp), bool),
    ]
    values = np.stack([p[:, None] & masks for p in parts], axis=1).astype(np.float64)  # (n, 5, K)
    s, t, c, a, m = np.moveaxis(boot.means(values), 1, 0)  # each (B, K)
    return {
        "shape_bias": _ratio(s, s + t),
        "fraction_shape": _ratio(s, c),
        "fraction_texture": _ratio(t, c),
        "accuracy": _ratio(a, m),
    }


def accuracy_replicates(correct: np.ndarray, masks: np.ndarray, boot: Bootstrap) -> np.ndarray:
    """(B, K): the accuracy over the trials of each column of ``masks`` (n, K) in every replicate."""
    m = masks.astype(np.float64)
    reps = boot.means(np.stack([m * correct[:, None], m], axis=1))  # (B, 2, K)
    return _ratio(reps[:, 0], reps[:, 1])


def condition_masks(resp: pd.DataFrame, rows: pd.DataFrame) -> np.ndarray:
    """(n, K): trial i belongs to row k (a dataset and, where the row has one, a condition)."""
    ds = resp["dataset"].astype(str).to_numpy()
    cond = resp["condition"].map(condition_key).to_numpy()
    cols = []
    for r in rows.itertuples(index=False):
        m = ds == str(r.dataset)
        if getattr(r, "condition", "kept") != "kept":
            m &= cond == condition_key(r.condition)
        cols.append(m)
    return np.stack(cols, axis=1)


def _trial_keys(df: pd.DataFrame) -> pd.Series:
    return df["dataset"].astype(str) + "|" + df["condition"].map(condition_key) + "|" + df["image_id"].astype(str)


def _human_groups(resp: pd.DataFrame, humans: pd.DataFrame) -> List[tuple]:
    """Per human and dataset: (dataset, model trial index (m,), condition group (m,), human correct (m,))."""
    index = pd.Series(np.arange(len(resp)), index=_trial_keys(resp).to_numpy())
    out = []
    for (_subj, ds), g in humans.loc[humans["subj"].map(is_human)].groupby(["subj", "dataset"], sort=True):
        keys = _trial_keys(g).to_numpy()
        ok = np.isin(keys, index.index)
        if not ok.any():
            continue
        g = g.loc[ok]
        idx = index.loc[keys[ok]].to_numpy()
        groups = pd.factorize(g["condition"].map(condition_key))[0]
        out.append((str(ds), idx, groups, (g["object_response"] == g["category"]).to_numpy(bool)))
    return out


def consistency_statistic(resp: pd.DataFrame, humans: pd.DataFrame, weights: np.ndarray) -> np.ndarray:
    """(B,) error consistency (kappa) of the model with the humans for trial weights (B, n): per
    condition, then the mean over conditions, humans, datasets (Fig. 12's aggregation). ``humans``:
    the human trials of the kept conditions."""
    a = (resp["object_response"] == resp["category"]).to_numpy(np.float64)
    per_ds: Dict[str, List[np.ndarray]] = {}
    for ds, idx, groups, b in _human_groups(resp, humans):
        w = weights[:, idx]  # (B, m)
        n_groups = int(groups.max()) + 1
        sums = np.zeros((4, weights.shape[0], n_groups))
        for k, v in enumerate((np.ones_like(b, float), a[idx], b.astype(float), (a[idx] == b).astype(float))):
            np.add.at(sums[k].T, groups, (w * v).T)
        tot, sa, sb, agree = sums
        p1, p2, obs = _ratio(sa, tot), _ratio(sb, tot), _ratio(agree, tot)
        exp = p1 * p2 + (1 - p1) * (1 - p2)
        kappa = np.where(obs >= 1.0, 1.0, _ratio(obs - exp, 1 - exp))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            per_ds.setdefault(ds, []).append(np.nanmean(kappa, axis=1))  # mean over conditions
    if not per_ds:
        return np.full(weights.shape[0], np.nan)
    with warnings.catch_warnings():  # a replicate may draw no trial of a condition: NaN, left out of the mean
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean([np.nanmean(v, axis=0) for v in per_ds.values()], axis=0)


__all__ = [
    "accuracy_replicates",
    "condition_masks",
    "consistency_statistic",
    "shape_bias_replicates",
]
