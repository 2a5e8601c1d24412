"""Matrix-free spectral algorithms on a symmetric operator v ↦ Hv over flat vectors (PROBES.md,
"Optimisation geometry"; paper Sec. 4 and Fig. 7, following PyHessian, Yao et al. 2020):

- :func:`lanczos_top` — Lanczos with full reorthogonalisation (two Gram-Schmidt passes), the
  tridiagonal kept in float64; stops when the residual bound |β_m s_mi| ≤ tol·|θ_i| holds for the
  k Ritz values of largest magnitude (the residual bounds the eigenvalue error, so this is stricter
  than a relative change between iterations). A Krylov space exhausted early (an invariant subspace)
  restarts from a fresh random direction orthogonal to it, so repeated eigenvalues are found too;
- :func:`power_top` — PyHessian's power iteration with deflation (largest magnitude, sign kept),
  stopping when the eigenvalue changes by less than tol relative between two iterations;
- :func:`hutchinson` — Hutchinson's trace with Rademacher probes and a standard error, optionally on
  the complement of an orthonormal basis Q whose part tr(QᵀHQ) is known exactly (deflation: the
  outlying top eigen-directions then add nothing to the variance);
- :func:`slq` — stochastic Lanczos quadrature nodes and weights for the spectral density.

All randomness comes from a caller's ``torch.Generator``: the global RNG is never touched.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Callable, List, Optional, Sequence, Tuple

import numpy as np
import torch

MatVec = Callable[[torch.Tensor], torch.Tensor]


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


@dataclass
class TraceEstimate:
    estimate: float
    se: float  # standard error of the estimate
    products: int
    samples: int
    converged: bool
    exact_part: float = 0.0  # tr(QᵀHQ) of the deflated basis (0 without deflation)
    values: List[float] = field(default_factory=list)  # zᵀ(PHP)z per probe


def _dot64(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.dot(a.double(), b.double()))


def _orthogonalise(w: torch.Tensor, basis: Sequence[torch.Tensor]) -> torch.Tensor:
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
        a = _dot64(q, w)
        w = w - a * q - (beta_prev * q_prev if q_prev is not None else 0.0)
        w = _orthogonalise(w, kr.basis)
        b = math.sqrt(max(_dot64(w, w), 0.0))
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
            w = _orthogonalise(random_unit(n, gen, q.dtype, q.device), kr.basis)
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
    matvec: MatVec,
    n: int,
    k: int,
    tol: float,
    max_iter: int,
    gen: torch.Generator,
    dtype: torch.dtype,
    device: torch.device,
) -> Tuple[List[float], List[torch.Tensor], int, bool, Krylov]:
    """Top-k eigenpairs by magnitude: (values, unit flat vectors, products, converged, Krylov run)."""

    def done(kr: Krylov) -> bool:
        if len(kr.alpha) < k:
            return False
        theta, _, res = ritz(kr)
        return bool(np.all(res[:k] <= tol * np.abs(theta[:k])))

    kr = lanczos(matvec, random_unit(n, gen, dtype, device), max_iter, gen, stop=done, max_restarts=k)
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
            f"{(res[:k] / np.maximum(np.abs(theta[:k]), 1e-300)).tolist()}); raise max_iter."
        )
    return [float(t) for t in theta[:k]], vecs, kr.products, converged, kr


def power_top(
    matvec: MatVec,
    n: int,
    k: int,
    tol: float,
    max_iter: int,
    gen: torch.Generator,
    dtype: torch.dtype,
    device: torch.device,
) -> Tuple[List[float], List[torch.Tensor], int, bool]:
    """PyHessian's method: for each eigenvalue, power iteration on (I−VVᵀ)H(I−VVᵀ) with V the ones
    found so far; ``max_iter`` products at most per eigenvalue."""
    vals: List[float] = []
    vecs: List[torch.Tensor] = []
    products, converged = 0, True
    for _ in range(k):
        v = random_unit(n, gen, dtype, device)
        lam_prev: Optional[float] = None
        ok = False
        for _ in range(max_iter):
            v = _orthogonalise(v, vecs)
            v = v / v.norm()
            hv = matvec(v)
            products += 1
            lam = _dot64(hv, v)
            nrm = float(hv.norm())
            v = hv / nrm if nrm > 0 else v
            if lam_prev is not None and abs(lam - lam_prev) / (abs(lam_prev) + 1e-6) < tol:
                ok = True
                break
            lam_prev = lam
        v = _orthogonalise(v, vecs)
        vals.append(lam)
        vecs.append(v / v.norm())
        converged &= ok
    if not converged:
        warnings.warn(
            f"power iteration did not reach tol={tol} within max_iter={max_iter} products per "
            f"eigenvalue; raise max_iter."
        )
    order = sorted(range(k), key=lambda i: -abs(vals[i]))
    return [vals[i] for i in order], [vecs[i] for i in order], products, converged


def hutchinson(
    matvec: MatVec,
    n: int,
    tol: float,
    max_iter: int,
    gen: torch.Generator,
    dtype: torch.dtype,
    device: torch.device,
    criterion: str = "se",
    min_samples: int = 10,
    basis: Sequence[torch.Tensor] = (),
    exact_part: float = 0.0,
    matmat: Optional[Callable[[torch.Tensor], torch.Tensor]] = None,
    block: int = 1,
) -> TraceEstimate:
    """tr(H) ≈ exact_part + mean_z zᵀPHPz with Rademacher z and P = I − QQᵀ (Q = ``basis``, orthonormal,
    with tr(QᵀHQ) = ``exact_part``). ``criterion="se"``: stop once the standard error is at most
    tol·|estimate| (after ``min_samples``); ``"change"``: PyHessian's rule, stop once the running mean
    changes by less than tol relative. With ``matmat`` the probes go ``block`` at a time; the rule is
    checked after every sample and all samples of the block that met it are kept."""
    if criterion not in ("se", "change"):
        raise ValueError(f"criterion={criterion!r}; choose 'se' (standard error) or 'change' (PyHessian's rule).")
    block = max(1, int(block)) if matmat is not None else 1
    q = torch.stack(list(basis)) if len(basis) else None  # (m, n)
    values: List[float] = []
    mean_prev: Optional[float] = None
    converged = False
    count, run_mean, m2 = 0, 0.0, 0.0  # Welford's running mean and sum of squared deviations
    while len(values) < max_iter and not converged:
        s = min(block, max_iter - len(values))
        z = torch.randint(0, 2, (s, n), generator=gen, device=device).to(dtype).mul_(2).sub_(1)  # (s, n)
        if q is not None:
            z = z - (z @ q.T) @ q
        hz = matmat(z) if matmat is not None else matvec(z[0]).unsqueeze(0)
        for v in (z.double() * hz.double()).sum(dim=1).tolist():
            values.append(v)
            count += 1
            delta = v - run_mean
            run_mean += delta / count
            m2 += delta * (v - run_mean)
            mean = exact_part + run_mean
            if criterion == "se":
                se = math.sqrt(m2 / (count - 1) / count) if count > 1 else math.inf
                converged = converged or (count >= min_samples and se <= tol * abs(mean))
            else:
                changed = math.inf if mean_prev is None else abs(mean - mean_prev) / (abs(mean_prev) + 1e-6)
                converged = converged or changed < tol
            mean_prev = mean
    if not converged:
        warnings.warn(
            f"Hutchinson's trace did not reach tol={tol} ({criterion}) in max_iter={max_iter} "
            f"samples; raise max_iter or tol."
        )
    se = float(np.std(values, ddof=1) / math.sqrt(len(values))) if len(values) > 1 else math.nan
    return TraceEstimate(
        exact_part + float(np.mean(values)), se, len(values), len(values), converged, exact_part, values
    )


def slq(
    matvec: MatVec, n: int, steps: int, runs: int, gen: torch.Generator, dtype: torch.dtype, device: torch.device
) -> Tuple[List[np.ndarray], List[np.ndarray], int]:
    """Stochastic Lanczos quadrature: per run, the Ritz values (nodes) and the squared first
    components of T's eigenvectors (weights, summing to 1) from a Rademacher start."""
    nodes, weights, products = [], [], 0
    for _ in range(runs):
        kr = lanczos(matvec, random_unit(n, gen, dtype, device, rademacher=True), steps, gen, restart=False)
        products += kr.products
        theta, s = np.linalg.eigh(kr.tridiagonal())
        nodes.append(theta)
        weights.append(s[0, :] ** 2)
    return nodes, weights, products


def density_on_grid(
    nodes: Sequence[np.ndarray],
    weights: Sequence[np.ndarray],
    num_points: int = 1000,
    sigma_squared: float = 1e-5,
    overhead: float = 0.01,
) -> Tuple[np.ndarray, np.ndarray]:
    """Gaussian-broadened spectral density on a grid, normalised to integrate to 1. PyHessian's
    convention (so plots compare): the Gaussian variance is ``sigma_squared·max(1, λmax−λmin)`` and the
    grid spans [λmin − overhead, λmax + overhead]."""
    allx = np.concatenate([np.asarray(x, dtype=np.float64) for x in nodes])
    lo, hi = allx.min() - overhead, allx.max() + overhead
    grid = np.linspace(lo, hi, num_points)
    var = sigma_squared * max(1.0, hi - lo)
    dens = np.zeros_like(grid)
    for x, w in zip(nodes, weights):
        g = np.exp(-((grid[:, None] - np.asarray(x)[None, :]) ** 2) / (2 * var)) / math.sqrt(2 * math.pi * var)
        dens += g @ np.asarray(w, dtype=np.float64)
    dens /= len(nodes)
    area = np.trapezoid(dens, grid) if hasattr(np, "trapezoid") else np.trapz(dens, grid)
    return grid, dens / area if area > 0 else dens


__all__ = [
    "Krylov",
    "TraceEstimate",
    "lanczos",
    "ritz",
    "lanczos_top",
    "power_top",
    "hutchinson",
    "slq",
    "density_on_grid",
    "random_unit",
]
