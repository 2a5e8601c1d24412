"""Hutchinson's estimator of the trace of a symmetric operator (paper Sec. 4, Fig. 7f; PyHessian,
Yao et al. 2020): Rademacher probes z with tr(H) ≈ mean zᵀHz and a standard error, optionally on the
complement of an orthonormal basis Q whose part tr(QᵀHQ) is known exactly (deflation: the outlying
top eigen-directions then add nothing to the variance).

All randomness comes from a caller's ``torch.Generator``: the global RNG is never touched.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import List, Optional, Sequence

import numpy as np
import torch

from maskdistill.probes.curvature.lanczos import Operator

CRITERIA = ("se", "change")


@dataclass
class TraceEstimate:
    estimate: float
    se: float  # standard error of the estimate
    products: int
    samples: int
    converged: bool
    exact_part: float = 0.0  # tr(QᵀHQ) of the deflated basis (0 without deflation)
    values: List[float] = field(default_factory=list)  # zᵀ(PHP)z per probe


class _StopRule:
    """Welford's running mean and variance of the samples, and the stopping rule on them:
    ``"se"`` -- standard error at most tol·|estimate| after ``min_samples``; ``"change"`` --
    PyHessian's rule, the running mean changes by less than tol relative."""

    def __init__(self, criterion: str, tol: float, min_samples: int, exact_part: float) -> None:
        self.criterion, self.tol, self.min_samples, self.exact_part = criterion, tol, min_samples, exact_part
        self.count, self.run_mean, self.m2 = 0, 0.0, 0.0
        self.mean_prev: Optional[float] = None
        self.converged = False

    def add(self, v: float) -> None:
        self.count += 1
        delta = v - self.run_mean
        self.run_mean += delta / self.count
        self.m2 += delta * (v - self.run_mean)
        mean = self.exact_part + self.run_mean
        if self.criterion == "se":
            se = math.sqrt(self.m2 / (self.count - 1) / self.count) if self.count > 1 else math.inf
            self.converged = self.converged or (self.count >= self.min_samples and se <= self.tol * abs(mean))
        else:
            prev = self.mean_prev
            changed = math.inf if prev is None else abs(mean - prev) / (abs(prev) + 1e-6)
            self.converged = self.converged or changed < self.tol
        self.mean_prev = mean


def hutchinson(
    op: Operator,
    tol: float,
    max_iter: int,
    gen: torch.Generator,
    criterion: str = "se",
    min_samples: int = 10,
    basis: Sequence[torch.Tensor] = (),
    exact_part: float = 0.0,
    block: Optional[int] = None,
) -> TraceEstimate:
    """tr(H) ≈ exact_part + mean_z zᵀPHPz with Rademacher z and P = I − QQᵀ (Q = ``basis``, orthonormal,
    with tr(QᵀHQ) = ``exact_part``), at most ``max_iter`` probes. ``block=None``: one ``op.matvec``
    per probe; an int: ``op.matmat`` (rows (s, n) -> (s, n)) on ``block`` probes at a time (the rule
    is checked after every sample and all samples of the block that met it are kept)."""
    if criterion not in CRITERIA:
        raise ValueError(f"criterion={criterion!r}; choose 'se' (standard error) or 'change' (PyHessian's rule).")
    per_call = max(1, int(block)) if block is not None else 1
    q = torch.stack(list(basis)) if len(basis) else None  # (m, n)
    values: List[float] = []
    rule = _StopRule(criterion, tol, min_samples, exact_part)
    while len(values) < max_iter and not rule.converged:
        s = min(per_call, max_iter - len(values))
        z = torch.randint(0, 2, (s, op.n), generator=gen, device=op.device).to(op.dtype).mul_(2).sub_(1)  # (s, n)
        if q is not None:
            z = z - (z @ q.T) @ q
        hz = op.matmat(z) if block is not None else op.matvec(z[0]).unsqueeze(0)
        for v in (z.double() * hz.double()).sum(dim=1).tolist():
            values.append(v)
            rule.add(v)
    if not rule.converged:
        warnings.warn(
            f"Hutchinson's trace did not reach tol={tol} ({criterion}) in max_iter={max_iter} "
            f"samples; raise max_iter or tol.",
            stacklevel=2,
        )
    se = float(np.std(values, ddof=1) / math.sqrt(len(values))) if len(values) > 1 else math.nan
    return TraceEstimate(
        exact_part + float(np.mean(values)), se, len(values), len(values), rule.converged, exact_part, values
    )


__all__ = ["CRITERIA", "TraceEstimate", "hutchinson"]
