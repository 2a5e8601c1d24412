"""The rows the curvature probes (paper Sec. 4, Fig. 7) save, with their uncertainty and whether the
solver converged, so that a reader of the CSV alone can tell a bound from a guess.

Columns: ``block``, ``metric``, ``index``, ``value``, ``ci_low``, ``ci_high`` (NaN where a row has
no interval), and ``batch`` on the per-batch rows. Metrics:

- ``eigenvalue`` (index i): the Ritz value; ``ci_low``/``ci_high`` its residual bound (Lanczos
  |β_m s_mi|, power iteration ‖Hv − λv‖): an eigenvalue of H lies in the interval;
- ``trace``: Hutchinson's estimate, ``ci_low``/``ci_high`` its normal 95 % interval (also as the
  rows ``trace_se``, ``trace_ci95_low``, ``trace_ci95_high``);
- ``converged`` (1/0), ``tolerance`` (the stated one), ``tolerance_reached`` (the largest relative
  residual bound of the eigenvalues -- for power iteration, whose rule is PyHessian's relative
  change, this can exceed ``tolerance`` when converged -- or SE/|trace|), ``products``;
- with several batches, ``eigenvalue_batch`` / ``trace_batch`` per batch (column ``batch``) and
  their spread ``eigenvalue_batch_std`` / ``trace_batch_std`` (the sample standard deviation).
"""

from __future__ import annotations

from typing import Any, Dict, List, Sequence

import numpy as np
import pandas as pd

from maskdistill.probes.core.intervals import LEVEL, bound_interval, normal_half_width
from maskdistill.probes.curvature.results import EigenResult, TraceResult

COLUMNS = ["block", "metric", "index", "value", "ci_low", "ci_high"]


def row(metric: str, value: float, index: int = 0, lo: float = np.nan, hi: float = np.nan, **extra: Any) -> Dict:
    return dict(block="all", metric=metric, index=index, value=float(value), ci_low=lo, ci_high=hi, **extra)


def status_rows(converged: bool, tolerance: float, tolerance_reached: float, products: int) -> List[Dict]:
    """Whether the solver met its stopping rule, the rule's tolerance and what it reached."""
    return [
        row("converged", float(bool(converged))),
        row("tolerance", tolerance),
        row("tolerance_reached", tolerance_reached),
        row("products", float(products)),
    ]


def eigen_rows(res: EigenResult) -> List[Dict]:
    rows = []
    for i, (v, r) in enumerate(zip(res.eigenvalues, res.residuals or [np.nan] * len(res.eigenvalues))):
        lo, hi = bound_interval(v, r)
        rows.append(row("eigenvalue", v, i, lo, hi))
    return rows


def trace_rows(tr: TraceResult) -> List[Dict]:
    lo, hi = bound_interval(tr.estimate, normal_half_width(tr.se, LEVEL))
    return [
        row("trace", tr.estimate, 0, lo, hi),
        row("trace_se", tr.se),
        row("trace_ci95_low", lo),
        row("trace_ci95_high", hi),
    ]


def spread_rows(metric: str, per_batch: Sequence[Sequence[float]]) -> List[Dict]:
    """``per_batch[b][i]``: value i measured on batch b alone -> the per-batch rows and their std."""
    values = np.asarray(per_batch, dtype=float)  # (batches, K)
    rows = [row(f"{metric}_batch", v, i, batch=b) for b, vs in enumerate(values) for i, v in enumerate(vs)]
    std = values.std(axis=0, ddof=1) if len(values) > 1 else np.full(values.shape[1], np.nan)
    rows += [row(f"{metric}_batch_std", s, i) for i, s in enumerate(std)]
    return rows


def frame(rows: List[Dict]) -> pd.DataFrame:
    table = pd.DataFrame(rows)
    return table[COLUMNS + [c for c in table.columns if c not in COLUMNS]]


__all__ = ["COLUMNS", "eigen_rows", "frame", "row", "spread_rows", "status_rows", "trace_rows"]
