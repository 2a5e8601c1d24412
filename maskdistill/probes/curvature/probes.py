"""Registered optimisation-geometry probes for ``maskdistill analyze`` (paper Sec. 4, Fig. 7):
``hessian_top_eigs``, ``hessian_trace``, ``hessian_density`` and ``loss_landscape_2d``.

What they need from the probe context (duck-typed, so any object with these works):

- ``ctx.model``: the classifier, ``model(inputs) -> logits (B, classes)`` on the inputs below;
- ``ctx.device``: where to run;
- ``ctx.labelled_batches(n_batches, batch_size) -> list[(inputs (B, C, H, W), labels (B,))]``: the
  same fixed, normalised, labelled batches at every call (labels from the data folder);
- optional ``ctx.name`` (the model's name in the results) and ``ctx.label_smoothing`` (the training
  loss; default 0, plain cross-entropy — the value used is written into the metadata).

Each probe measures the mean cross-entropy over those batches in eval mode with eager attention.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import pandas as pd
import torch
from torch import nn

from maskdistill.probes.core.registry import ProbeResult, register
from maskdistill.probes.curvature.hessian import eigen_density, hessian_trace, per_block_sharpness, top_eigenvalues
from maskdistill.probes.curvature.hvp import ParamFilter
from maskdistill.probes.curvature.landscape import loss_landscape_2d


@dataclass
class _Setup:
    """What every curvature probe measures on: the classifier, its loss, the fixed batches, the seed,
    and the metadata they share."""

    model: nn.Module
    loss_fn: nn.Module
    batches: List[Tuple[torch.Tensor, torch.Tensor]]
    seed: int
    meta: Dict[str, Any]


def _setup(
    ctx: Any,
    n_batches: int,
    batch_size: Optional[int],
    label_smoothing: Optional[float],
    seed: Optional[int],
    params: ParamFilter,
) -> _Setup:
    batch_size = int(batch_size or getattr(ctx, "batch_size", 64))
    if not hasattr(ctx, "labelled_batches"):
        raise TypeError(
            "the Hessian probes need labelled images: the probe context has no labelled_batches(); "
            "point the analysis at a data folder with class sub-folders."
        )
    device = torch.device(getattr(ctx, "device", "cpu"))
    batches = [(x.to(device), y.to(device)) for x, y in ctx.labelled_batches(n_batches, batch_size)]
    if not batches:
        raise ValueError("the probe context returned no labelled batches; the data folder has no labelled images.")
    ls = float(getattr(ctx, "label_smoothing", 0.0) if label_smoothing is None else label_smoothing)
    seed = int(getattr(ctx, "seed", 0) if seed is None else seed)
    mine = {
        "loss": "cross-entropy",
        "label_smoothing": ls,
        "mode": "eval, eager attention, float32",
        "images": sum(int(x.shape[0]) for x, _ in batches),
        "n_batches": len(batches),
        "hessian_batch_size": batch_size,
        "seed": seed,
        "params": repr(params),
    }
    meta = ctx.meta(**mine) if callable(getattr(ctx, "meta", None)) else mine
    return _Setup(ctx.model, nn.CrossEntropyLoss(label_smoothing=ls), batches, seed, meta)


def _name(ctx: Any) -> str:
    return str(getattr(ctx, "name", None) or "model")


def _padded(runs: Sequence[np.ndarray], width: int) -> np.ndarray:
    """Runs of different lengths -> (runs, width), NaN-padded."""
    return np.stack([np.pad(np.asarray(x, float), (0, width - len(x)), constant_values=np.nan) for x in runs])


@register("hessian_top_eigs", needs=("classifier", "labels"), figure="Fig. 7 (λ1, λ2)")
def hessian_top_eigs(
    ctx: Any,
    k: int = 2,
    method: str = "lanczos",
    tol: float = 1e-3,
    max_iter: Optional[int] = None,
    n_batches: int = 1,
    batch_size: Optional[int] = None,
    params: ParamFilter = None,
    per_block: bool = False,
    seed: Optional[int] = None,
    label_smoothing: Optional[float] = None,
) -> ProbeResult:
    """Top-k Hessian eigenvalues by magnitude (sign kept) of the whole network (block "all") and,
    with ``per_block``, of each block's diagonal Hessian block."""
    s = _setup(ctx, n_batches, batch_size, label_smoothing, seed, params)
    res = top_eigenvalues(
        s.model, s.loss_fn, s.batches, k=k, method=method, tol=tol, max_iter=max_iter, params=params, seed=s.seed
    )
    rows = [dict(block="all", metric="eigenvalue", index=i, value=v) for i, v in enumerate(res.eigenvalues)]
    rows.append(dict(block="all", metric="products", index=0, value=float(res.products)))
    table = pd.DataFrame(rows)
    if per_block:
        pb = per_block_sharpness(s.model, s.loss_fn, s.batches, k=k, tol=tol, trace=False, seed=s.seed)
        table = pd.concat([table, pb[["block", "metric", "index", "value"]]], ignore_index=True)
    s.meta.update(k=k, method=method, tol=tol, converged=res.converged, products=res.products)
    s.meta["order"] = "by magnitude, sign kept"
    return ProbeResult("hessian_top_eigs", _name(ctx), table, s.meta)


@register("hessian_trace", needs=("classifier", "labels"), figure="Fig. 7f")
def hessian_trace_probe(
    ctx: Any,
    tol: float = 1e-2,
    max_iter: int = 500,
    n_batches: int = 1,
    batch_size: Optional[int] = None,
    params: ParamFilter = None,
    deflate: int = 0,
    per_block: bool = False,
    seed: Optional[int] = None,
    label_smoothing: Optional[float] = None,
) -> ProbeResult:
    """Hutchinson's trace with its standard error and 95 % interval (stops at SE ≤ tol·|trace|)."""
    s = _setup(ctx, n_batches, batch_size, label_smoothing, seed, params)
    tr = hessian_trace(
        s.model, s.loss_fn, s.batches, tol=tol, max_iter=max_iter, params=params, seed=s.seed, deflate=deflate
    )
    lo, hi = tr.ci95
    rows = [
        dict(block="all", metric=m, value=v)
        for m, v in (
            ("trace", tr.estimate),
            ("trace_se", tr.se),
            ("trace_ci95_low", lo),
            ("trace_ci95_high", hi),
            ("products", float(tr.products)),
        )
    ]
    table = pd.DataFrame(rows)
    if per_block:
        pb = per_block_sharpness(s.model, s.loss_fn, s.batches, k=1, trace=True, trace_tol=tol, seed=s.seed)
        table = pd.concat([table, pb[pb.metric != "eigenvalue"][["block", "metric", "value"]]], ignore_index=True)
    s.meta.update(tol=tol, criterion="se", deflate=deflate, converged=tr.converged, samples=tr.samples)
    s.meta["method"] = tr.method
    return ProbeResult("hessian_trace", _name(ctx), table, s.meta)


@register("hessian_density", needs=("classifier", "labels"), figure="eigenvalue density (PyHessian)")
def hessian_density(
    ctx: Any,
    steps: int = 100,
    runs: int = 1,
    n_batches: int = 1,
    batch_size: Optional[int] = None,
    params: ParamFilter = None,
    num_points: int = 1000,
    sigma_squared: float = 1e-5,
    seed: Optional[int] = None,
    label_smoothing: Optional[float] = None,
) -> ProbeResult:
    """Spectral density by stochastic Lanczos quadrature; the table holds the broadened density on a
    grid, the arrays the raw nodes and weights (runs, steps)."""
    s = _setup(ctx, n_batches, batch_size, label_smoothing, seed, params)
    dens = eigen_density(s.model, s.loss_fn, s.batches, steps=steps, runs=runs, params=params, seed=s.seed)
    grid, values = dens.on_grid(num_points, sigma_squared)
    table = pd.DataFrame({"eigenvalue": grid, "metric": "density", "value": values})
    width = max(len(x) for x in dens.nodes)
    s.meta.update(steps=steps, runs=runs, products=dens.products, sigma_squared=sigma_squared)
    s.meta["broadening"] = "Gaussian, variance sigma_squared*max(1, range) (PyHessian)"
    arrays = {"nodes": _padded(dens.nodes, width), "weights": _padded(dens.weights, width)}
    return ProbeResult("hessian_density", _name(ctx), table, s.meta, arrays)


@register("loss_landscape_2d", needs=("classifier", "labels"), figure="Fig. 7a/b/d/e")
def loss_landscape_probe(
    ctx: Any,
    directions: str = "hessian",
    grid: int = 21,
    span: float = 0.5,
    n_batches: int = 1,
    batch_size: Optional[int] = None,
    params: ParamFilter = None,
    tol: float = 1e-3,
    seed: Optional[int] = None,
    label_smoothing: Optional[float] = None,
) -> ProbeResult:
    """Loss on θ + α v1 + β v2 (top-2 Hessian eigenvectors, or filter-normalised random directions)."""
    s = _setup(ctx, n_batches, batch_size, label_smoothing, seed, params)
    ls = loss_landscape_2d(
        s.model, s.loss_fn, s.batches, directions=directions, grid=grid, span=span, params=params, seed=s.seed, tol=tol
    )
    s.meta.update(directions=directions, grid=grid, span=span, eigenvalues=ls.eigenvalues, products=ls.products)
    s.meta["normalisation"] = "none (unit eigenvectors)" if directions == "hessian" else "per-row filter norm"
    arrays = {"alpha": ls.alpha, "beta": ls.beta, "loss": ls.loss}
    return ProbeResult("loss_landscape_2d", _name(ctx), ls.to_frame(), s.meta, arrays)


__all__ = ["hessian_top_eigs", "hessian_trace_probe", "hessian_density", "loss_landscape_probe"]
