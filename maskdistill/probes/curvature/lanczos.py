"""Matrix-free eigen-solvers on a symmetric operator v ↦ Hv over flat vectors (paper Sec. 4 and
Fig. 7, following PyHessian, Yao et al. 2020):

- :func:`lanczos_top` -- Lanczos with full reorthogonalisation (two Gram-Schmidt passes), the
  tridiagonal kept in float64; stops when the residual bound |β_m s_mi| ≤ tol·|θ_i| holds for the
  k Ritz values of largest magnitude (the residual bounds the eigenvalue error, so this is stricter
  than a relative change between iterations). A Krylov space exhausted early (an invariant subspace)
  restarts from a fresh random direction orthogonal to it, so repeated eigenvalues are found too;
- :func:`power_top` -- PyHessian's power iteration with deflation (largest magnitude, sign kept),
  stopping when the eigenvalue changes by less than tol relative between two iterations.

All randomness comes from a caller's ``torch.Generator``: the global RNG is never touched.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Callable, List, Optional, Protocol, Sequence, Tuple

import numpy as np
import torch

MatVec = Callable[[torch.Tensor], torch.Tensor]


class Operator(Protocol):
    """A symmetric linear map on flat vectors of length ``n`` (e.g. a ``HessianOperator``)."""

    n: int
    dtype: torch.dtype
    device: torch.device

    def matvec(self, v: torch.Tensor) -> torch.Tensor: ...


@dataclass
class Krylov:
    basis: List[torch.Tensor]  # orthonormal Lanczos vectors q_0..q_{m-1}, each (n,)
    alpha: List[float]  # diagonal of T (float64)
    beta: List[float]  # off-diagonal: beta[j] couples q_j and q_{j+1}; 0 marks a restart
    products: int = 0
    residual: float = 0.0  # ‖w‖ after the last step: the coupling to the next Lanczos vector

    def tridiagonal(self) -> np.ndarray:
        m = len(self.alpha)
        t = np.diag(np.asarray(self.alpha, dtype=np.float64))
        off = np.asarray(self.beta[: m - 1], dtype=np.float64)
        return t + np.diag(off, 1) + np.diag(off, -1)


def dot64(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.dot(a.double(), b.double()))


def orthogonalise(w: torch.Tensor, basis: Sequence[torch.Tensor]) -> torch.Tensor:
    for _ in range(2):  # "twice is enough" (Kahan/Parlett): classical Gram-Schmidt, repeated
        for q in basis:
            w = w - torch.dot(q, w) * q
    return w


def random_unit(
    n: int, gen: torch.Generator, dtype: torch.dtype, device: torch.device, rademacher: bool = False
) -> torch.Tensor:
    if rademacher:
        v = torch.randint(0, 2, (n,), generator=gen, device=device).to(dtype).mul_(2).sub_(1)
    else:
        v = torch.randn(n, generator=gen, device=device, dtype=dtype)
    return v / v.norm()


def lanczos(
    matvec: MatVec,
    q0: torch.Tensor,
    steps: int,
    gen: torch.Generator,
    stop: Optional[Callable[[Krylov], bool]] = None,
    restart: bool = True,
    max_restarts: int = 1,
) -> Krylov:
    """Up to ``steps`` Lanczos steps from unit ``q0``; ``stop(krylov)`` is asked after every step.
    Without ``restart`` an exhausted Krylov space ends the run (what quadrature needs)."""
    n = q0.numel()
    restarts_left = max_restarts
    kr = Krylov([q0], [], [])
    q_prev, beta_prev = None, 0.0
    for j in range(min(steps, n)):
        q = kr.basis[j]
        w = matvec(q)
        kr.products += 1
        a = dot64(q, w)
        w = w - a * q - (beta_prev * q_prev if q_prev is not None else 0.0)
        w = orthogonalise(w, kr.basis)
        b = math.sqrt(max(dot64(w, w), 0.0))
        kr.alpha.append(a)
        kr.residual = b
        scale = max(abs(x) for x in kr.alpha) or 1.0
        exhausted = b <= 1e-10 * scale * math.sqrt(n)
        if exhausted:
            kr.residual = 0.0
        if len(kr.basis) == n or (exhausted and not restart):
            break
        # An exhausted space's Ritz values are exact but may miss eigenvalues its start vector did not
        # touch (e.g. a repeated top eigenvalue): explore the complement before trusting ``stop`` (at
        # most ``restarts_left`` times, so a low-rank H does not spin on its null space).
        if (not exhausted or restarts_left <= 0) and stop is not None and stop(kr):
            break
        if exhausted:  # invariant subspace: continue in its complement (T becomes block diagonal)
            restarts_left -= 1
            w = orthogonalise(random_unit(n, gen, q.dtype, q.device), kr.basis)
            b_next, b = 0.0, float(w.norm())
        else:
            b_next = b
        kr.beta.append(b_next)
        q_prev, beta_prev = q, b_next
        kr.basis.append(w / b)
    return kr


def ritz(kr: Krylov) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Ritz values sorted by magnitude (descending), their vectors in T's basis, residual bounds."""
    theta, s = np.linalg.eigh(kr.tridiagonal())
    order = np.argsort(-np.abs(theta), kind="stable")
    theta, s = theta[order], s[:, order]
    return theta, s, np.abs(kr.residual * s[-1, :])


def lanczos_top(
    op: Operator, k: int, tol: float, max_iter: int, gen: torch.Generator
) -> Tuple[List[float], List[torch.Tensor], int, bool, Krylov, List[float]]:
    """Top-k eigenpairs by magnitude: (values, unit flat vectors, products, converged, Krylov run,
    residual bounds |β_m s_mi|: an eigenvalue of H lies within each of its Ritz value)."""

    def done(kr: Krylov) -> bool:
        if len(kr.alpha) < k:
            return False
        theta, _, res = ritz(kr)
        return bool(np.all(res[:k] <= tol * np.abs(theta[:k])))

    kr = lanczos(op.matvec, random_unit(op.n, gen, op.dtype, op.device), max_iter, gen, stop=done, max_restarts=k)
    theta, s, res = ritz(kr)
    converged = len(kr.alpha) >= k and bool(np.all(res[:k] <= tol * np.abs(theta[:k])))
    if len(kr.alpha) < k:
        raise ValueError(
            f"k={k} eigenvalues need at least {k} Lanczos steps; max_iter={max_iter} allows "
            f"{len(kr.alpha)}. Raise max_iter."
        )
    vecs = []
    for i in range(k):
        v = torch.zeros_like(kr.basis[0])
        for j, q in enumerate(kr.basis[: len(kr.alpha)]):
            v = v + float(s[j, i]) * q
        vecs.append(v / v.norm())
    if not converged:
        warnings.warn(
            f"Lanczos did not reach tol={tol} in {len(kr.alpha)} steps (relative residuals "
            f"{(res[:k] / np.maximum(np.abs(theta[:k]), 1e-300)).tolist()}); raise max_iter.",
            stacklevel=2,
        )
    return [float(t) for t in theta[:k]], vecs, kr.products, converged, kr, [float(r) for r in res[:k]]


def power_top(
    op: Operator, k: int, tol: float, max_iter: int, gen: torch.Generator
) -> Tuple[List[float], List[torch.Tensor], int, bool, List[float]]:
    """PyHessian's method: for each eigenvalue, power iteration on (I−VVᵀ)H(I−VVᵀ) with V the ones
    found so far; ``max_iter`` products at most per eigenvalue. The last element: the residuals
    ‖Hv − λv‖ of the last iterate v and its Rayleigh quotient λ (an eigenvalue of H lies within)."""
    vals: List[float] = []
    vecs: List[torch.Tensor] = []
    residuals: List[float] = []
    products, converged = 0, True
    for _ in range(k):
        v = random_unit(op.n, gen, op.dtype, op.device)
        lam_prev: Optional[float] = None
        ok = False
        for _ in range(max_iter):
            v = orthogonalise(v, vecs)
            v = v / v.norm()
            hv = op.matvec(v)
            products += 1
            lam = dot64(hv, v)
            resid = float((hv.double() - lam * v.double()).norm())  # for H itself, any unit v
            nrm = float(hv.norm())
            v = hv / nrm if nrm > 0 else v
            if lam_prev is not None and abs(lam - lam_prev) / (abs(lam_prev) + 1e-6) < tol:
                ok = True
                break
            lam_prev = lam
        v = orthogonalise(v, vecs)
        vals.append(lam)
        residuals.append(resid)
        vecs.append(v / v.norm())
        converged &= ok
    if not converged:
        warnings.warn(
            f"power iteration did not reach tol={tol} within max_iter={max_iter} products per "
            f"eigenvalue; raise max_iter.",
            stacklevel=2,
        )
    order = sorted(range(k), key=lambda i: -abs(vals[i]))
    return [vals[i] for i in order], [vecs[i] for i in order], products, converged, [residuals[i] for i in order]


__all__ = ["Krylov", "MatVec", "Operator", "lanczos", "lanczos_top", "power_top", "random_unit", "ritz"]
