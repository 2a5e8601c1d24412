"""The Hessian estimators on one :class:`~maskdistill.probes.curvature.hvp.HessianOperator` (paper
Sec. 4, Fig. 7): the top-k eigenpairs by Lanczos or power iteration, the exact trace from unit
vectors, and Hutchinson's trace, plain or deflated by a Lanczos Krylov space whose part of the trace
(tr T = Σ α_j) is exact. ``hessian.py`` wraps them for a model; every random vector comes from a
private generator seeded by ``seed``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional

import numpy as np
import torch

from maskdistill.probes.curvature.hutchinson import TraceEstimate, hutchinson
from maskdistill.probes.curvature.hvp import HessianOperator
from maskdistill.probes.curvature.lanczos import Krylov, lanczos, lanczos_top, power_top, random_unit
from maskdistill.probes.curvature.results import TraceResult

EIG_METHODS = ("lanczos", "power")
MAX_EXACT_TRACE = 20_000  # unit-vector products for the exact trace; beyond this use Hutchinson


def seeded(op: HessianOperator, seed: int) -> torch.Generator:
    """A private generator on the operator's device (the global RNG is never touched)."""
    return torch.Generator(device=op.device).manual_seed(int(seed))


def _check_k(k: int, n: int, method: str, max_iter: int) -> None:
    if k < 1:
        raise ValueError(f"k={k}: ask for at least one eigenvalue.")
    if k > n:
        raise ValueError(
            f"k={k} is larger than the number of selected parameters ({n}); the Hessian has only "
            f"{n} eigenvalues. Lower k or select more parameters."
        )
    if method == "lanczos" and k > max_iter:
        raise ValueError(f"k={k} is larger than max_iter={max_iter} Lanczos steps; raise max_iter.")


@dataclass
class Eigenpairs:
    values: List[float]  # by magnitude, sign kept
    vectors: List[torch.Tensor]  # unit, flat
    products: int
    converged: bool
    residuals: List[float]  # error bounds: an eigenvalue of H lies within residuals[i] of values[i]
    budget: int  # the most products the solver was allowed
    krylov: Optional[Krylov] = None  # the Lanczos run (None for power iteration)


def default_max_iter(method: str, k: int) -> int:
    """Lanczos steps in all, or products per eigenvalue for power iteration (PyHessian's 100)."""
    return max(100, 10 * k) if method == "lanczos" else 100


def top_eigenpairs(
    op: HessianOperator, k: int, method: str, tol: float, max_iter: Optional[int], seed: int
) -> Eigenpairs:
    """The k eigenpairs of largest magnitude, with their residual bounds and the Lanczos run."""
    if method not in EIG_METHODS:
        raise ValueError(f"method={method!r}; choose one of {EIG_METHODS}.")
    max_iter = max_iter or default_max_iter(method, k)
    _check_k(k, op.n, method, max_iter)
    gen = seeded(op, seed)
    if method == "lanczos":
        vals, vecs, products, ok, kr, res = lanczos_top(op, k, tol, max_iter, gen)
        return Eigenpairs(vals, vecs, products, ok, res, max_iter, kr)
    vals, vecs, products, ok, res = power_top(op, k, tol, max_iter, gen)
    return Eigenpairs(vals, vecs, products, ok, res, max_iter * k)


def exact_trace(op: HessianOperator, block: int) -> TraceResult:
    """Σ e_iᵀHe_i over all selected parameters: n products, vectorised ``max(block, 64)`` at a time
    (several times faster on the small models this is for)."""
    if op.n > MAX_EXACT_TRACE:
        raise ValueError(
            f"the exact trace needs {op.n} products (one per selected parameter), more than "
            f"{MAX_EXACT_TRACE}; use Hutchinson (exact=False) or select fewer parameters."
        )
    total = 0.0
    chunk = max(block, 64)
    for i0 in range(0, op.n, chunk):
        idx = torch.arange(i0, min(i0 + chunk, op.n), device=op.device)
        e = torch.zeros(len(idx), op.n, dtype=op.dtype, device=op.device)
        e[torch.arange(len(idx)), idx] = 1.0  # unit vectors e_i, one per row
        total += float(op.matmat(e)[torch.arange(len(idx)), idx].double().sum())
    return TraceResult(total, 0.0, op.products, op.n, True, "exact")


def krylov_trace(
    op: HessianOperator,
    kr: Krylov,
    tol: float,
    max_iter: int,
    gen: torch.Generator,
    criterion: str,
    block: Optional[int],
) -> TraceEstimate:
    """Hutchinson on the complement of the Krylov space of ``kr``, plus its exact part tr T = Σ α_j."""
    m = len(kr.alpha)
    return hutchinson(
        op, tol, max_iter, gen, criterion, basis=kr.basis[:m], exact_part=float(np.sum(kr.alpha)), block=block
    )


def hutchinson_trace(
    op: HessianOperator, tol: float, max_iter: int, seed: int, criterion: str, deflate: int, block: int
) -> TraceResult:
    """Hutchinson's trace, first deflated by ``deflate`` Lanczos steps when ``deflate > 0``."""
    gen = seeded(op, seed)
    if deflate <= 0:
        est = hutchinson(op, tol, max_iter, gen, criterion, block=block)
        return TraceResult(est.estimate, est.se, op.products, est.samples, est.converged, "hutchinson")
    if deflate >= op.n:
        raise ValueError(
            f"deflate={deflate} Lanczos steps cover all {op.n} selected parameters; use "
            f"exact=True or a smaller deflate."
        )
    kr = lanczos(op.matvec, random_unit(op.n, gen, op.dtype, op.device), deflate, gen)
    est = krylov_trace(op, kr, tol, max_iter, gen, criterion, block)
    return TraceResult(est.estimate, est.se, op.products, est.samples, est.converged, "hutchinson+deflation")


__all__ = [
    "EIG_METHODS",
    "Eigenpairs",
    "default_max_iter",
    "MAX_EXACT_TRACE",
    "exact_trace",
    "hutchinson_trace",
    "krylov_trace",
    "seeded",
    "top_eigenpairs",
]
