"""The Hessian of a model's loss on a fixed list of batches (paper Sec. 4, Fig. 7c/f and the
eigenvectors behind Fig. 7a/b/d/e; PROBES.md, "Optimisation geometry"): products, the top
eigenvalues (Lanczos or PyHessian's power iteration), Hutchinson's trace, the spectral density
(stochastic Lanczos quadrature) and per-block results.

Every function runs the model in eval mode with eager attention (restored afterwards), never writes
``.grad`` nor a parameter, and draws its random vectors from a private generator seeded by
``seed`` (the global RNG is untouched). ``loss_fn(outputs, targets)`` is a criterion such as
``nn.CrossEntropyLoss()``; ``batches`` a list of (inputs, targets); ``params`` a parameter filter
(see :func:`maskdistill.probes.curvature.hvp.select_params`): the Hessian is then the diagonal block of those
parameters. The registered probes live in ``hessian_probes.py``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Union

import numpy as np
import pandas as pd
import torch
from torch import nn

from maskdistill.models.modes import curvature_mode
from maskdistill.probes.curvature import lanczos as lz
from maskdistill.probes.curvature.hvp import Batches, HessianOperator, LossFn, ParamFilter, select_params

Vector = Union[torch.Tensor, Sequence[torch.Tensor]]
EIG_METHODS = ("lanczos", "power")
MAX_EXACT_TRACE = 20_000  # unit-vector products for the exact trace; beyond this use Hutchinson


@dataclass
class EigenResult:
    eigenvalues: List[float]  # sorted by magnitude (descending), sign kept
    eigenvectors: List[List[torch.Tensor]]  # unit norm, each a list shaped like the parameters
    products: int  # Hessian-vector products used
    converged: bool
    method: str
    param_names: List[str] = field(default_factory=list)


@dataclass
class TraceResult:
    estimate: float
    se: float  # standard error (0 for the exact trace)
    products: int
    samples: int
    converged: bool
    method: str  # "hutchinson" | "hutchinson+deflation" | "exact"

    @property
    def ci95(self) -> tuple:
        return self.estimate - 1.96 * self.se, self.estimate + 1.96 * self.se


@dataclass
class DensityResult:
    nodes: List[np.ndarray]  # Ritz values per run
    weights: List[np.ndarray]  # quadrature weights per run (each sums to 1)
    products: int

    def on_grid(self, num_points: int = 1000, sigma_squared: float = 1e-5) -> tuple:
        """(eigenvalue grid, density), Gaussian-broadened as PyHessian plots it."""
        return lz.density_on_grid(self.nodes, self.weights, num_points, sigma_squared)


def _generator(op: HessianOperator, seed: int) -> torch.Generator:
    return torch.Generator(device=op.device).manual_seed(int(seed))


def _flat(op: HessianOperator, v: Vector) -> torch.Tensor:
    if torch.is_tensor(v):
        return v.reshape(-1).to(op.device, op.dtype)
    v = list(v)
    if len(v) != len(op.params) or any(a.shape != p.shape for a, p in zip(v, op.params)):
        raise ValueError(
            f"v must be a flat tensor of {op.n} numbers or a list of {len(op.params)} tensors "
            f"shaped like the selected parameters ({op.names[:3]}...)."
        )
    return op.flatten([a.to(op.device, op.dtype) for a in v])


def hvp(
    model: nn.Module, loss_fn: LossFn, batches: Batches, v: Vector, params: ParamFilter = None, method: str = "reverse"
) -> List[torch.Tensor]:
    """Hv of the mean loss over ``batches``; ``v`` and the result are shaped like the selected
    parameters. ``method``: "reverse" (double backprop) or "forward" (forward-over-reverse)."""
    with curvature_mode(model):
        op = HessianOperator(model, loss_fn, batches, params, method=method, cache_graph=False)
        return [t.clone() for t in op.unflatten(op.matvec(_flat(op, v)))]


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


def _top(op: HessianOperator, k: int, method: str, tol: float, max_iter: Optional[int], seed: int) -> tuple:
    if method not in EIG_METHODS:
        raise ValueError(f"method={method!r}; choose one of {EIG_METHODS}.")
    max_iter = max_iter or (max(100, 10 * k) if method == "lanczos" else 100)
    _check_k(k, op.n, method, max_iter)
    gen = _generator(op, seed)
    if method == "lanczos":
        vals, vecs, products, ok, kr = lz.lanczos_top(op.matvec, op.n, k, tol, max_iter, gen, op.dtype, op.device)
        return vals, vecs, products, ok, kr
    vals, vecs, products, ok = lz.power_top(op.matvec, op.n, k, tol, max_iter, gen, op.dtype, op.device)
    return vals, vecs, products, ok, None


def top_eigenvalues(
    model: nn.Module,
    loss_fn: LossFn,
    batches: Batches,
    k: int = 2,
    method: str = "lanczos",
    tol: float = 1e-3,
    max_iter: Optional[int] = None,
    params: ParamFilter = None,
    seed: int = 0,
    hvp_method: str = "reverse",
) -> EigenResult:
    """The k eigenvalues of largest magnitude and their unit eigenvectors. ``max_iter``: Lanczos steps
    in all (default max(100, 10k)), or products per eigenvalue for power iteration (default 100, as
    PyHessian). ``tol``: Lanczos — relative residual bound; power — relative change (PyHessian)."""
    with curvature_mode(model):
        op = HessianOperator(model, loss_fn, batches, params, method=hvp_method)
        vals, vecs, products, ok, _ = _top(op, k, method, tol, max_iter, seed)
        return EigenResult(vals, [[t.clone() for t in op.unflatten(v)] for v in vecs], products, ok, method, op.names)


def hessian_trace(
    model: nn.Module,
    loss_fn: LossFn,
    batches: Batches,
    tol: float = 1e-3,
    max_iter: int = 1000,
    params: ParamFilter = None,
    seed: int = 0,
    criterion: str = "se",
    deflate: int = 0,
    exact: bool = False,
    hvp_method: str = "reverse",
    block: int = 1,
) -> TraceResult:
    """tr(H) by Hutchinson with Rademacher probes (estimate, standard error, products).

    ``criterion="se"`` stops once SE ≤ tol·|estimate| (honest; may need many samples), ``"change"``
    uses PyHessian's rule (running mean changes < tol). ``deflate=m`` first runs m Lanczos steps and
    takes tr over that Krylov space exactly (the sum of T's diagonal), sampling only its complement:
    same expectation, far lower variance when a few outlying eigenvalues dominate. ``exact=True``
    sums e_iᵀHe_i over all selected parameters (n products; small models or one block only).
    ``block``: probes per vectorised product (``HessianOperator.matmat``): faster for small models,
    slower than single products for a ViT4MNIST-sized one on a CPU, hence 1 by default."""
    with curvature_mode(model):
        op = HessianOperator(model, loss_fn, batches, params, method=hvp_method)
        if exact:
            if op.n > MAX_EXACT_TRACE:
                raise ValueError(
                    f"the exact trace needs {op.n} products (one per selected parameter), more than "
                    f"{MAX_EXACT_TRACE}; use Hutchinson (exact=False) or select fewer parameters."
                )
            total = 0.0
            chunk = max(block, 64)  # vectorised products: several times faster on the small models this is for
            for i0 in range(0, op.n, chunk):
                idx = torch.arange(i0, min(i0 + chunk, op.n), device=op.device)
                e = torch.zeros(len(idx), op.n, dtype=op.dtype, device=op.device)
                e[torch.arange(len(idx)), idx] = 1.0  # unit vectors e_i, one per row
                total += float(op.matmat(e)[torch.arange(len(idx)), idx].double().sum())
            return TraceResult(total, 0.0, op.products, op.n, True, "exact")
        gen = _generator(op, seed)
        basis, exact_part = [], 0.0
        if deflate > 0:
            if deflate >= op.n:
                raise ValueError(
                    f"deflate={deflate} Lanczos steps cover all {op.n} selected parameters; use "
                    f"exact=True or a smaller deflate."
                )
            kr = lz.lanczos(op.matvec, lz.random_unit(op.n, gen, op.dtype, op.device), deflate, gen)
            basis, exact_part = kr.basis[: len(kr.alpha)], float(np.sum(kr.alpha))
        est = lz.hutchinson(
            op.matvec,
            op.n,
            tol,
            max_iter,
            gen,
            op.dtype,
            op.device,
            criterion,
            basis=basis,
            exact_part=exact_part,
            matmat=op.matmat,
            block=block,
        )
        return TraceResult(
            est.estimate,
            est.se,
            op.products,
            est.samples,
            est.converged,
            "hutchinson+deflation" if deflate > 0 else "hutchinson",
        )


def hessian_summary(
    model: nn.Module,
    loss_fn: LossFn,
    batches: Batches,
    k: int = 2,
    tol: float = 1e-3,
    trace_tol: float = 1e-2,
    max_iter: Optional[int] = None,
    trace_max_iter: int = 1000,
    criterion: str = "se",
    params: ParamFilter = None,
    seed: int = 0,
    hvp_method: str = "reverse",
) -> tuple:
    """Top-k eigenpairs (Lanczos) and the trace from one operator: the Lanczos Krylov space is reused
    as the deflation space of Hutchinson's estimator (its part of the trace, tr T = Σ α_j, is exact),
    so the products spent on the eigenvalues also cut the trace's variance. -> (EigenResult, TraceResult)."""
    with curvature_mode(model):
        op = HessianOperator(model, loss_fn, batches, params, method=hvp_method)
        vals, vecs, products, ok, kr = _top(op, k, "lanczos", tol, max_iter, seed)
        eig = EigenResult(vals, [[t.clone() for t in op.unflatten(v)] for v in vecs], products, ok, "lanczos", op.names)
        m, exact_part = len(kr.alpha), float(np.sum(kr.alpha))
        if m >= op.n:  # the Krylov space is the whole space: tr T is the trace
            return eig, TraceResult(exact_part, 0.0, op.products, 0, True, "exact")
        est = lz.hutchinson(
            op.matvec,
            op.n,
            trace_tol,
            trace_max_iter,
            _generator(op, seed + 1),
            op.dtype,
            op.device,
            criterion,
            basis=kr.basis[:m],
            exact_part=exact_part,
        )
        return eig, TraceResult(est.estimate, est.se, op.products, est.samples, est.converged, "hutchinson+deflation")


def eigen_density(
    model: nn.Module,
    loss_fn: LossFn,
    batches: Batches,
    steps: int = 100,
    runs: int = 1,
    params: ParamFilter = None,
    seed: int = 0,
    hvp_method: str = "reverse",
) -> DensityResult:
    """Stochastic Lanczos quadrature (``runs`` Rademacher starts, ``steps`` Lanczos steps each)."""
    if steps < 1 or runs < 1:
        raise ValueError(f"steps={steps}, runs={runs}: both must be at least 1.")
    with curvature_mode(model):
        op = HessianOperator(model, loss_fn, batches, params, method=hvp_method)
        nodes, weights, products = lz.slq(op.matvec, op.n, steps, runs, _generator(op, seed), op.dtype, op.device)
        return DensityResult(nodes, weights, products)


def default_blocks(model: nn.Module) -> Dict[str, List[str]]:
    """Parameter prefixes per block: each top-level child, except that a container of several
    children of one type (timm's ``blocks``) is split into its members ("blocks.0", ...)."""
    groups: Dict[str, List[str]] = {}
    for name, _ in model.named_parameters(recurse=False):
        groups[name] = [name]  # cls_token, pos_embed, ... as their own blocks, first (they feed block 0)
    for name, child in model.named_children():
        kids = list(child.named_children())
        if len(kids) > 1 and len({type(c) for _, c in kids}) == 1:
            for k, _ in kids:
                groups[f"{name}.{k}"] = [f"{name}.{k}"]
        else:
            groups[name] = [name]
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    return {b: pre for b, pre in groups.items() if any(n == p or n.startswith(p + ".") for n in trainable for p in pre)}


def per_block_sharpness(
    model: nn.Module,
    loss_fn: LossFn,
    batches: Batches,
    blocks: Optional[Dict[str, ParamFilter]] = None,
    k: int = 1,
    tol: float = 1e-3,
    trace: bool = True,
    trace_tol: float = 1e-2,
    max_iter: Optional[int] = None,
    trace_max_iter: int = 200,
    seed: int = 0,
    deflate: int = 0,
) -> pd.DataFrame:
    """Top-k eigenvalues and the trace of each block's diagonal Hessian block, as a tidy table:
    block, n_params, metric ("eigenvalue" with index, "trace", "trace_se"), index, value, products."""
    blocks = blocks if blocks is not None else default_blocks(model)
    rows = []
    for b, filt in blocks.items():
        n = sum(p.numel() for _, p in select_params(model, filt))
        kb = min(k, n)
        eig = top_eigenvalues(model, loss_fn, batches, k=kb, tol=tol, max_iter=max_iter, params=filt, seed=seed)
        for i, lam in enumerate(eig.eigenvalues):
            rows.append(dict(block=b, n_params=n, metric="eigenvalue", index=i, value=lam, products=eig.products))
        if trace:
            tr = hessian_trace(
                model,
                loss_fn,
                batches,
                tol=trace_tol,
                max_iter=trace_max_iter,
                params=filt,
                seed=seed,
                deflate=min(deflate, n - 1),
                exact=n <= 64,
            )
            rows.append(dict(block=b, n_params=n, metric="trace", index=0, value=tr.estimate, products=tr.products))
            rows.append(dict(block=b, n_params=n, metric="trace_se", index=0, value=tr.se, products=tr.products))
    return pd.DataFrame(rows, columns=["block", "n_params", "metric", "index", "value", "products"])


__all__ = [
    "EigenResult",
    "TraceResult",
    "DensityResult",
    "hvp",
    "top_eigenvalues",
    "hessian_trace",
    "hessian_summary",
    "eigen_density",
    "default_blocks",
    "per_block_sharpness",
    "select_params",
]

# The registered probes (``hessian_top_eigs``, ``hessian_trace``, ``hessian_density``) register on import.
