"""Uncertainty of the numbers a report draws: a seeded percentile bootstrap over the analysed images
(or stimuli), and the intervals of differences between two models.

Every replicate ``r`` draws ``n`` units with replacement, as multinomial counts ``c_r`` (B, n)
from a generator seeded by ``(seed, n)`` only. Two models measured on the same units in the same
order (the models of an ``analyze --pair``: the same data, subset and seed) therefore see the same
resamples, and the replicate-wise difference ``s_r - t_r`` is a **paired** bootstrap of the
student-teacher delta; replicates of models measured on different units are independent, and the
same difference is the unpaired bootstrap.

Saved form (the report and the claims table read it): a result's array ``bootstrap.<metric>`` of
shape (B, K) holds the replicates of the K table rows of ``metric`` in table order (K = 1 for a
scalar), its table the columns ``ci_low`` / ``ci_high``, its metadata ``bootstrap`` the settings.
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass
from functools import lru_cache
from typing import Any, Callable, Dict, Iterator, Optional, Tuple

import numpy as np
import pandas as pd

PREFIX = "bootstrap."
REPLICATES = 1000
LEVEL = 0.95
CACHED_COUNTS = 4_000_000  # replicates x units up to which the counts are kept between calls (32 MB)


@lru_cache(maxsize=4)
def _cached_counts(boot: "Bootstrap", n: int) -> np.ndarray:
    counts = np.concatenate(list(boot.count_chunks(n))).astype(np.float64)
    counts.setflags(write=False)
    return counts


def percentile_interval(replicates: np.ndarray, level: float = LEVEL) -> Tuple[np.ndarray, np.ndarray]:
    """The percentile interval (low, high) of coverage ``level`` over axis 0 of ``replicates``; NaN
    replicates (a ratio with no trial in its denominator) are left out."""
    a = (1.0 - level) / 2.0
    r = np.asarray(replicates, dtype=np.float64)
    with warnings.catch_warnings():  # a ratio undefined in every replicate (no trial of a category): NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanquantile(r, a, axis=0), np.nanquantile(r, 1.0 - a, axis=0)


def array_key(metric: str) -> str:
    """The array name under which a result keeps the replicates of ``metric``."""
    return PREFIX + metric


@dataclass(frozen=True)
class Bootstrap:
    """Resampling settings; ``counts(n)`` is the same for every model with the same ``n`` and seed."""

    replicates: int = REPLICATES
    level: float = LEVEL
    seed: int = 0

    def __post_init__(self) -> None:
        if self.replicates < 2:
            raise ValueError(f"bootstrap replicates={self.replicates}: use at least 2 (1000 is the default).")
        if not 0.0 < self.level < 1.0:
            raise ValueError(f"bootstrap level={self.level}: give a coverage between 0 and 1, e.g. 0.95.")

    def count_chunks(self, n: int, chunk: int = 128) -> Iterator[np.ndarray]:
        """The (B, n) multinomial counts (how often replicate r draws unit i; rows sum to n) in
        chunks of ``chunk`` replicates, float32: memory stays small for 50,000 images."""
        if n < 1:
            raise ValueError("a bootstrap needs at least one image.")
        rng = np.random.default_rng([int(self.seed), int(n), 0x0B0075])
        p = np.full(n, 1.0 / n)
        for start in range(0, self.replicates, chunk):
            yield rng.multinomial(n, p, size=min(chunk, self.replicates - start)).astype(np.float32)

    def counts(self, n: int) -> np.ndarray:
        """All (B, n) counts at once (the same rows as :meth:`count_chunks`), float64; kept for the
        next call when small (every metric of every model with ``n`` images uses the same)."""
        if self.replicates * n <= CACHED_COUNTS:
            return _cached_counts(self, int(n))
        return np.concatenate(list(self.count_chunks(n))).astype(np.float64)

    def means(self, values: np.ndarray) -> np.ndarray:
        """Replicates (B, ...) of the mean over units of ``values`` (n, ...)."""
        v = np.asarray(values, dtype=np.float64)
        n = v.shape[0]
        flat = v.reshape(n, -1)
        if self.replicates * n <= CACHED_COUNTS:
            out = self.counts(n) @ flat / n
        else:  # 50,000 images: the counts in chunks, never all at once
            out = np.concatenate([c.astype(np.float64) @ flat for c in self.count_chunks(n)]) / n
        return out.reshape((self.replicates,) + v.shape[1:])

    def statistic(self, n: int, fn: Callable[[np.ndarray], Any]) -> np.ndarray:
        """Replicates (B, ...) of a statistic that is no mean: ``fn(weights (n,))`` evaluates it with
        unit ``i`` counted ``weights[i]`` times (e.g. a weighted covariance's spectrum)."""
        return np.stack([np.asarray(fn(c), dtype=np.float64) for ch in self.count_chunks(n) for c in ch])

    def interval(self, replicates: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """Percentile interval (low, high) over axis 0 of ``replicates``; NaN replicates (a ratio with no
        trial in its denominator) are left out."""
        return percentile_interval(replicates, self.level)

    def describe(self, n: int, unit: str = "image") -> Dict[str, Any]:
        return dict(asdict(self), n=int(n), unit=unit, method="percentile")


def attach(table: pd.DataFrame, arrays: Dict[str, np.ndarray], metric: str, reps: np.ndarray, boot: Bootstrap) -> None:
    """Give the rows of ``metric`` in ``table`` their interval columns and keep the replicates.
    ``reps``: (B, K) with K the number of rows of ``metric``, in table order."""
    reps = np.asarray(reps, dtype=np.float64).reshape(boot.replicates, -1)
    rows = np.flatnonzero((table["metric"] == metric).to_numpy())
    if len(rows) != reps.shape[1]:
        raise ValueError(f"{metric}: {reps.shape[1]} replicate columns for {len(rows)} table rows.")
    for col in ("ci_low", "ci_high"):
        if col not in table.columns:
            table[col] = np.nan
    lo, hi = boot.interval(reps)
    table.iloc[rows, table.columns.get_loc("ci_low")] = lo
    table.iloc[rows, table.columns.get_loc("ci_high")] = hi
    arrays[array_key(metric)] = reps.astype(np.float32)


def replicates(result: Any, metric: str) -> Optional[np.ndarray]:
    """The saved replicates (B, K) of ``metric`` in a ``ProbeResult`` (None when it has none)."""
    a = result.arrays.get(array_key(metric))
    return None if a is None else np.asarray(a, dtype=np.float64).reshape(a.shape[0], -1)


def paired(meta_a: Dict[str, Any], meta_b: Dict[str, Any]) -> bool:
    """Whether two results were measured on the same units in the same order (same data, subset,
    seed, count and bootstrap settings), so their replicates pair up."""
    ba, bb = meta_a.get("bootstrap"), meta_b.get("bootstrap")
    if not ba or not bb or ba != bb:
        return False
    keys = ("data", "seed", "images_requested", "images")
    return all(meta_a.get(k) == meta_b.get(k) for k in keys)


def bound_interval(value: float, half_width: float) -> Tuple[float, float]:
    """A symmetric interval ``value ± half_width`` (a solver's error bound or 1.96 standard errors)."""
    return float(value - half_width), float(value + half_width)


def normal_half_width(std_error: float, level: float = LEVEL) -> float:
    """The half width of a normal interval of coverage ``level`` for a standard error."""
    from statistics import NormalDist

    return float(NormalDist().inv_cdf(0.5 + level / 2.0) * std_error)


__all__ = [
    "Bootstrap",
    "LEVEL",
    "PREFIX",
    "REPLICATES",
    "array_key",
    "attach",
    "bound_interval",
    "normal_half_width",
    "paired",
    "percentile_interval",
    "replicates",
]
