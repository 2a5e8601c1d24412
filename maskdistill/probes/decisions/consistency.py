"""Error consistency (Geirhos, Meding & Wichmann 2020; paper App. C, Fig. 12): Cohen's kappa on the
trial-by-trial correctness of two observers on the *same* trials.

With accuracies p1, p2: c_exp = p1 p2 + (1 - p1)(1 - p2); c_obs = fraction of trials where both are
right or both are wrong; kappa = (c_obs - c_exp) / (1 - c_exp), and kappa = 1 when c_obs = 1.
Checks: identical responses -> 1; anti-correlated at p = 0.5 -> -1; independent -> about 0.

Trials are matched by ``(dataset, condition, image_id)`` (see ``responses.py``). Response tables for
different trial sets are an error naming the mismatch, unless ``intersect=True`` asks for the shared
trials (a partial stimulus copy evaluated against full human files).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Dict, Tuple

import numpy as np
import pandas as pd

from maskdistill.probes.decisions.responses import condition_key


@dataclass(frozen=True)
class Consistency:
    kappa: float  # error consistency
    observed: float  # c_obs
    expected: float  # c_exp
    accuracy_a: float
    accuracy_b: float
    n_trials: int

    def to_dict(self) -> Dict[str, float]:
        return asdict(self)


def kappa(observed: float, expected: float) -> float:
    """Cohen's kappa from observed and expected consistency (1 when observed is 1)."""
    if not (0.0 <= observed <= 1.0 and 0.0 <= expected <= 1.0):
        raise ValueError(f"consistencies must lie in [0, 1], got observed={observed}, expected={expected}.")
    if observed == 1.0:
        return 1.0
    return (observed - expected) / (1.0 - expected)


def consistency_from_correct(correct_a: np.ndarray, correct_b: np.ndarray) -> Consistency:
    """Error consistency of two aligned boolean correctness vectors."""
    a, b = np.asarray(correct_a, dtype=bool), np.asarray(correct_b, dtype=bool)
    if a.shape != b.shape or a.ndim != 1 or a.size == 0:
        raise ValueError(f"need two non-empty aligned 1-d correctness vectors, got {a.shape} and {b.shape}.")
    p1, p2 = float(a.mean()), float(b.mean())
    expected = p1 * p2 + (1.0 - p1) * (1.0 - p2)
    observed = float((a == b).mean())
    return Consistency(kappa(observed, expected), observed, expected, p1, p2, int(a.size))


def trial_keys(responses: pd.DataFrame) -> pd.Series:
    """One key per trial: ``dataset|condition|image_id`` (condition compared by value)."""
    ds = responses["dataset"].astype(str) if "dataset" in responses.columns else ""
    ids = responses["image_id"] if "image_id" in responses.columns else responses["imagename"]
    return ds + "|" + responses["condition"].map(condition_key) + "|" + ids.astype(str)


def _correct_by_key(responses: pd.DataFrame, name: str) -> pd.Series:
    if len(responses) == 0:
        raise ValueError(f"responses {name} are empty.")
    keys = trial_keys(responses)
    dup = keys[keys.duplicated()]
    if len(dup):
        subj = sorted(responses["subj"].astype(str).unique())
        raise ValueError(
            f"responses {name} hold {len(dup)} repeated trials (e.g. {dup.iloc[0]!r}; observers {subj[:4]}): "
            f"error consistency compares one observer's single session; select one subj/session."
        )
    return pd.Series((responses["object_response"] == responses["category"]).to_numpy(), index=keys.to_numpy())


def align(a: pd.DataFrame, b: pd.DataFrame, intersect: bool = False) -> Tuple[np.ndarray, np.ndarray]:
    """Correctness of ``a`` and ``b`` on the same trials, in the same order: (n,), (n,) booleans."""
    ca, cb = _correct_by_key(a, "a"), _correct_by_key(b, "b")
    only_a = ca.index.difference(cb.index)
    only_b = cb.index.difference(ca.index)
    if (len(only_a) or len(only_b)) and not intersect:
        ex = list(only_a[:2]) + list(only_b[:2])
        raise ValueError(
            f"the two response tables cover different trials ({len(ca)} vs {len(cb)}; {len(only_a)} only "
            f"in a, {len(only_b)} only in b, e.g. {ex}): kappa needs the same trials. Pass "
            f"intersect=True to use the {len(ca.index.intersection(cb.index))} shared trials."
        )
    shared = ca.index.intersection(cb.index)
    if len(shared) == 0:
        raise ValueError(
            "the two response tables share no trial (dataset|condition|image_id); are they from the "
            "same dataset and stimuli?"
        )
    return ca.loc[shared].to_numpy(bool), cb.loc[shared].to_numpy(bool)


def error_consistency(responses_a: pd.DataFrame, responses_b: pd.DataFrame, intersect: bool = False) -> Consistency:
    """Kappa, observed and expected consistency and both accuracies of two observers on the same trials
    (accuracies are those on the compared trials)."""
    return consistency_from_correct(*align(responses_a, responses_b, intersect=intersect))


__all__ = ["Consistency", "align", "consistency_from_correct", "error_consistency", "kappa", "trial_keys"]
