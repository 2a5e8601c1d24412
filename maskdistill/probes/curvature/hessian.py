"""The Hessian of a model's loss on a fixed list of batches (paper Sec. 4, Fig. 7c/f and the
eigenvectors behind Fig. 7a/b/d/e): products, the top eigenvalues (Lanczos or PyHessian's power
iteration), Hutchinson's trace, the spectral density (stochastic Lanczos quadrature) and per-block
results.

Every function runs the model in eval mode with eager attention (restored afterwards), never writes
``.grad`` nor a parameter, and draws its random vectors from a private generator seeded by
``seed`` (the global RNG is untouched). ``loss_fn(outputs, targets)`` is a criterion such as
``nn.CrossEntropyLoss()``; ``batches`` a list of (inputs, targets); ``params`` a parameter filter
(see :func:`maskdistill.probes.curvature.operands.select_params`): the Hessian is then the diagonal block of those
parameters. The Hessian is that of the sample-weighted mean loss over all batches.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Union

import numpy as np
import pandas as pd
import torch
from torch import nn

from maskdistill.models.modes import curvature_mode
from maskdistill.probes.curvature.estimators import (
    Eigenpairs,
    exact_trace,
    hutchinson_trace,
    krylov_trace,
    seeded,
    top_eigenpairs,
)
from maskdistill.probes.curvature.hvp import HessianOperator
from maskdistill.probes.curvature.lanczos import Krylov
from maskdistill.probes.curvature.operands import Batches, LossFn, ParamFilter, select_params
from maskdistill.probes.curvature.quadrature import slq
from maskdistill.probes.curvature.results import DensityResult, EigenResult, TraceResult

Vector = Union[torch.Tensor, Sequence[torch.Tensor]]


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
        return _eigen_result(op, top_eigenpairs(op, k, method, tol, max_iter, seed), method)


def _eigen_result(op: HessianOperator, ep: Eigenpairs, method: str) -> EigenResult:
    vecs = [[t.clone() for t in op.unflatten(v)] for v in ep.vectors]
    return EigenResult(ep.values, vecs, ep.products, ep.converged, method, op.names, ep.residuals, ep.budget, ep.krylov)


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
            return exact_trace(op, block)
        return hutchinson_trace(op, tol, max_iter, seed, criterion, deflate, block)


def deflated_trace(
    model: nn.Module,
    loss_fn: LossFn,
    batches: Batches,
    krylov: Krylov,
    params: ParamFilter = None,
    *,
    seed: int = 0,
    tol: float = 1e-2,
    max_iter: int = 200,
    criterion: str = "se",
) -> TraceResult:
    """tr(H) deflated by the Krylov space of an earlier Lanczos run on the same model, batches, loss
    and parameters (e.g. ``top_eigenvalues(...).krylov``): its part tr T = Σ α_j is exact, the rest
    is sampled. ``products`` counts only the new ones (the Lanczos run's are its own)."""
    with curvature_mode(model):
        op = HessianOperator(model, loss_fn, batches, params)
        if len(krylov.basis[0]) != op.n:
            raise ValueError(f"the Krylov space has vectors of {len(krylov.basis[0])} numbers, the Hessian {op.n}.")
        if len(krylov.alpha) >= op.n:  # the Krylov space is the whole space: tr T is the trace
            return TraceResult(float(np.sum(krylov.alpha)), 0.0, 0, 0, True, "exact")
        est = krylov_trace(op, krylov, tol, max_iter, seeded(op, seed + 1), criterion, block=None)
        return TraceResult(est.estimate, est.se, op.products, est.samples, est.converged, "hutchinson+deflation")


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
        ep = top_eigenpairs(op, k, "lanczos", tol, max_iter, seed)
        eig, kr = _eigen_result(op, ep, "lanczos"), ep.krylov
        exact_part = float(np.sum(kr.alpha))
        if len(kr.alpha) >= op.n:  # the Krylov space is the whole space: tr T is the trace
            return eig, TraceResult(exact_part, 0.0, op.products, 0, True, "exact")
        est = krylov_trace(op, kr, trace_tol, trace_max_iter, seeded(op, seed + 1), criterion, block=None)
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
        nodes, weights, products = slq(op, steps, runs, seeded(op, seed))
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
    "deflated_trace",
    "default_blocks",
    "eigen_density",
    "hessian_summary",
    "hessian_trace",
    "hvp",
    "per_block_sharpness",
    "top_eigenvalues",
]
