"""Registered optimisation-geometry probes for ``maskdistill analyze`` (paper Sec. 4, Fig. 7):
``hessian_top_eigs``, ``hessian_trace``, ``hessian_density`` and ``loss_landscape_2d``.

What they need from the probe context (duck-typed, so any object with these works):

- ``ctx.model``: the classifier, ``model(inputs) -> logits (B, classes)`` on the inputs below;
- ``ctx.device``: where to run;
- ``ctx.labelled_batches(n_batches, batch_size) -> list[(inputs (B, C, H, W), labels (B,))]``: the
  same fixed, normalised, labelled batches at every call (labels from the data folder); under
  torchrun this rank's share as a :class:`~maskdistill.parallel.shards.RankBatches`, and with
  ``ctx.hessian_images`` (``--hessian-images``) ``labelled_batches(n, batch_size, images=N)``:
  N images in batches of ``batch_size``, whatever ``n_batches`` says;
- optional ``ctx.name`` (the model's name in the results) and ``ctx.label_smoothing`` (the training
  loss; default 0, plain cross-entropy — the value used is written into the metadata).

Each probe measures the mean cross-entropy over those batches in eval mode with eager attention.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import pandas as pd

from maskdistill.probes.core.registry import ProbeResult, register
from maskdistill.probes.curvature.hessian import deflated_trace, eigen_density, hessian_trace, per_block_sharpness
from maskdistill.probes.curvature.landscape import loss_landscape_2d
from maskdistill.probes.curvature.operands import ParamFilter
from maskdistill.probes.curvature.results import EigenResult, TraceResult
from maskdistill.probes.curvature.setup import Setup, name_of, setup, shared_top
from maskdistill.probes.curvature.tables import eigen_rows, frame, spread_rows, status_rows, trace_rows

# The eigen-solver settings the three probes share by default (so they share one Lanczos run).
EIG_TOL = 1e-3  # relative residual bound |β s| ≤ tol·|λ| for λ1, λ2
EIG_STEPS = 100  # Lanczos steps: the product budget of the eigenvalues
TRACE_TOL = 0.05  # Hutchinson: stop at SE ≤ tol·|trace| (the 95 % interval is then about ±10 %)
TRACE_SAMPLES = 100  # Hutchinson probes after the deflation: the trace's own product budget
DENSITY_STEPS = 30  # Lanczos steps of the quadrature: the density's product budget
GRID = 11  # landscape points per axis (odd: the centre is θ itself); 121 losses
PER_BATCH_MAX = 8  # the spread over batches is measured by default for 2..8 batches (one solve each)


def _padded(runs: Sequence[np.ndarray], width: int) -> np.ndarray:
    """Runs of different lengths -> (runs, width), NaN-padded."""
    return np.stack([np.pad(np.asarray(x, float), (0, width - len(x)), constant_values=np.nan) for x in runs])


def _each_batch(s: Setup, per_batch: Optional[bool]) -> List[int]:
    """The batches to measure one by one: all of them when asked (default: when there are several)."""
    wanted = 1 < s.n_batches <= PER_BATCH_MAX if per_batch is None else per_batch
    return list(range(s.n_batches)) if wanted and s.n_batches > 1 else []


def _eig_status(res: EigenResult, tol: float) -> Dict[str, Any]:
    reached = max(res.relative_residuals) if res.residuals else float("nan")
    return dict(converged=bool(res.converged), tolerance=tol, tolerance_reached=reached, products=res.products)


@register("hessian_top_eigs", needs=("classifier", "labels"), figure="Fig. 7 (λ1, λ2)")
def hessian_top_eigs(
    ctx: Any,
    k: int = 2,
    method: str = "lanczos",
    tol: float = EIG_TOL,
    max_iter: Optional[int] = EIG_STEPS,
    n_batches: int = 1,
    batch_size: Optional[int] = None,
    params: ParamFilter = None,
    per_block: bool = False,
    per_batch: Optional[bool] = None,
    seed: Optional[int] = None,
    label_smoothing: Optional[float] = None,
) -> ProbeResult:
    """Top-k Hessian eigenvalues by magnitude (sign kept) of the whole network (block "all") with
    their residual bounds; with ``per_block``, of each block's diagonal Hessian block; with several
    batches, also per batch and their spread."""
    s = setup(ctx, n_batches, batch_size, label_smoothing, seed, params)
    res = shared_top(s, k, method, tol, max_iter, params)
    status = _eig_status(res, tol)
    rows = eigen_rows(res) + status_rows(**status)
    each = [shared_top(s, k, method, tol, max_iter, params, batch=b) for b in _each_batch(s, per_batch)]
    if each:
        rows += spread_rows("eigenvalue", [r.eigenvalues for r in each])
    table = frame(rows)
    if per_block:
        pb = per_block_sharpness(s.model, s.loss_fn, s.batches, k=k, tol=tol, trace=False, seed=s.seed)
        table = pd.concat([table, pb[["block", "metric", "index", "value"]]], ignore_index=True)
    s.meta.update(k=k, method=method, tol=tol, budget=res.budget, **status)
    s.meta["order"] = "by magnitude, sign kept"
    s.meta["interval"] = "residual bound: an eigenvalue of H lies in [ci_low, ci_high]"
    if each:
        s.meta["batches_converged"] = all(r.converged for r in each)
    return ProbeResult("hessian_top_eigs", name_of(ctx), table, s.meta)


def _trace(
    s: Setup, tol: float, max_iter: int, params: ParamFilter, deflate: Optional[int], batch: Optional[int] = None
) -> Tuple[TraceResult, int, int]:
    """The trace on all batches (or one), deflated by the shared top-2 Lanczos run when ``deflate``
    is None -> (TraceResult, products of the eigen part, its budget)."""
    batches = s.batches if batch is None else s.batch(batch)
    if deflate is not None:
        tr = hessian_trace(
            s.model, s.loss_fn, batches, tol=tol, max_iter=max_iter, params=params, seed=s.seed, deflate=deflate
        )
        return tr, 0, deflate
    top = shared_top(s, 2, "lanczos", EIG_TOL, EIG_STEPS, params, batch=batch)
    tr = deflated_trace(s.model, s.loss_fn, batches, top.krylov, params, seed=s.seed, tol=tol, max_iter=max_iter)
    return tr, top.products, top.budget


@register("hessian_trace", needs=("classifier", "labels"), figure="Fig. 7f")
def hessian_trace_probe(
    ctx: Any,
    tol: float = TRACE_TOL,
    max_iter: int = TRACE_SAMPLES,
    n_batches: int = 1,
    batch_size: Optional[int] = None,
    params: ParamFilter = None,
    deflate: Optional[int] = None,
    per_block: bool = False,
    per_batch: Optional[bool] = None,
    seed: Optional[int] = None,
    label_smoothing: Optional[float] = None,
) -> ProbeResult:
    """Hutchinson's trace with its standard error and 95 % interval (stops at SE ≤ tol·|trace| or
    after ``max_iter`` probes). ``deflate``: None -- on the complement of the Krylov space of the
    top-eigenvalue Lanczos run (shared with ``hessian_top_eigs``), whose part is exact; 0 -- plain
    Hutchinson; m -- deflated by m Lanczos steps of its own."""
    s = setup(ctx, n_batches, batch_size, label_smoothing, seed, params)
    tr, eig_products, eig_budget = _trace(s, tol, max_iter, params, deflate)
    products = tr.products + eig_products
    status = dict(converged=bool(tr.converged), tolerance=tol, tolerance_reached=tr.relative_se, products=products)
    rows = trace_rows(tr) + status_rows(**status)
    each = [_trace(s, tol, max_iter, params, deflate, batch=b)[0] for b in _each_batch(s, per_batch)]
    if each:
        rows += spread_rows("trace", [[t.estimate] for t in each])
    table = frame(rows)
    if per_block:
        pb = per_block_sharpness(s.model, s.loss_fn, s.batches, k=1, trace=True, trace_tol=tol, seed=s.seed)
        table = pd.concat([table, pb[pb.metric != "eigenvalue"][["block", "metric", "value"]]], ignore_index=True)
    s.meta.update(tol=tol, criterion="se", deflate="top-eigenvalue Krylov space" if deflate is None else deflate)
    s.meta.update(samples=tr.samples, budget=eig_budget + max_iter, method=tr.method, **status)
    s.meta["interval"] = "normal 95 % interval of the Hutchinson mean (ci_low, ci_high on the trace row)"
    if each:
        s.meta["batches_converged"] = all(t.converged for t in each)
    return ProbeResult("hessian_trace", name_of(ctx), table, s.meta)


@register("hessian_density", needs=("classifier", "labels"), figure="eigenvalue density (PyHessian)")
def hessian_density(
    ctx: Any,
    steps: int = DENSITY_STEPS,
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
    s = setup(ctx, n_batches, batch_size, label_smoothing, seed, params)
    dens = eigen_density(s.model, s.loss_fn, s.batches, steps=steps, runs=runs, params=params, seed=s.seed)
    grid, values = dens.on_grid(num_points, sigma_squared)
    table = pd.DataFrame({"eigenvalue": grid, "metric": "density", "value": values})
    width = max(len(x) for x in dens.nodes)
    s.meta.update(steps=steps, runs=runs, products=dens.products, budget=steps * runs, sigma_squared=sigma_squared)
    s.meta["broadening"] = "Gaussian, variance sigma_squared*max(1, range) (PyHessian)"
    arrays = {"nodes": _padded(dens.nodes, width), "weights": _padded(dens.weights, width)}
    return ProbeResult("hessian_density", name_of(ctx), table, s.meta, arrays)


@register("loss_landscape_2d", needs=("classifier", "labels"), figure="Fig. 7a/b/d/e")
def loss_landscape_probe(
    ctx: Any,
    directions: str = "hessian",
    grid: int = GRID,
    span: float = 0.5,
    n_batches: int = 1,
    batch_size: Optional[int] = None,
    params: ParamFilter = None,
    tol: float = EIG_TOL,
    seed: Optional[int] = None,
    label_smoothing: Optional[float] = None,
) -> ProbeResult:
    """Loss on θ + α v1 + β v2 (top-2 Hessian eigenvectors, shared with ``hessian_top_eigs``, or
    filter-normalised random directions); the metadata say whether θ is the grid's lowest point."""
    s = setup(ctx, n_batches, batch_size, label_smoothing, seed, params)
    top = shared_top(s, 2, "lanczos", tol, EIG_STEPS, params) if directions == "hessian" else None
    given = top.eigenvectors if top is not None else directions
    ls = loss_landscape_2d(
        s.model, s.loss_fn, s.batches, directions=given, grid=grid, span=span, params=params, seed=s.seed, tol=tol
    )
    table = ls.to_frame()
    if top is not None:
        ls.directions, ls.eigenvalues, ls.products = "hessian", top.eigenvalues, top.products
        s.meta.update(_eig_status(top, tol), budget=top.budget)
        table = pd.concat([table, pd.DataFrame([{"metric": "converged", "value": float(top.converged)}])])
    s.meta.update(directions=ls.directions, grid=grid, span=span, eigenvalues=ls.eigenvalues, products=ls.products)
    s.meta.update(ls.centre())
    s.meta["normalisation"] = "none (unit eigenvectors)" if directions == "hessian" else "per-row filter norm"
    arrays = {"alpha": ls.alpha, "beta": ls.beta, "loss": ls.loss}
    return ProbeResult("loss_landscape_2d", name_of(ctx), table.reset_index(drop=True), s.meta, arrays)


__all__ = ["hessian_top_eigs", "hessian_trace_probe", "hessian_density", "loss_landscape_probe"]
