"""What the curvature probes cost, for ``analyze --dry-run`` (:mod:`maskdistill.probes.core.plan`):
Hessian-vector products over the Hessian's images (bounded by each solver's budget; quadrature's
count is exact) and the landscape's loss evaluations (exact). The default solvers share one Lanczos
run per model (setup.py), and the plan counts it once. Each plan reads the probe's own parameters
(defaults from the probe's signature), so the counts follow whatever the run will be given."""

from __future__ import annotations

import math
from typing import Any, Dict, List, Mapping, Tuple

import torch
from torch import nn

from maskdistill.models.device import free_memory, peak_memory_of
from maskdistill.models.modes import curvature_mode
from maskdistill.probes.core.plan import Step, analysed_images, register_plan, register_timer, seconds_of
from maskdistill.probes.curvature.graph_memory import PEAK_OVER_GRAPH, graph_budget
from maskdistill.probes.curvature.hessian import default_blocks
from maskdistill.probes.curvature.hvp import HessianOperator
from maskdistill.probes.curvature.probes import EIG_STEPS, EIG_TOL, PER_BATCH_MAX
from maskdistill.probes.curvature.setup import HESSIAN_BATCH

Params = Mapping[str, Any]


def hessian_images(ctx: Any, p: Params) -> Tuple[int, int]:
    """(images, batch size) of the curvature probes, as ``setup`` takes them."""
    bs = int(p["batch_size"] or min(int(ctx.batch_size), HESSIAN_BATCH))
    if ctx.hessian_images:
        n = int(ctx.hessian_images)
        total = n if ctx.data.kind == "builtin" else len(ctx.data.dataset(None))
        return min(n, total), bs
    return min(int(p["n_batches"]) * bs, analysed_images(ctx)), bs


def _hvp(ctx: Any, probe: str, count: int, n: int, bs: int, **kw: Any) -> Step:
    """Products over ``n`` images (whether the graph is kept follows from the timed memory)."""
    return Step(probe, "hvp", int(count), n, bs, **kw)


def _lanczos(ctx: Any, probe: str, p: Params, k: int, tol: float, steps: int) -> Step:
    """The top-k Lanczos run; the default one is shared by the three probes that need it."""
    n, bs = hessian_images(ctx, p)
    default = k == 2 and tol == EIG_TOL and steps == EIG_STEPS
    shared = f"Lanczos run|{n}:{bs}:{p['params']!r}:{p['seed']}:{p['label_smoothing']}" if default else ""
    return _hvp(ctx, probe, steps, n, bs, bound=True, shared=shared)


def _per_batch(ctx: Any, probe: str, p: Params, products: int) -> List[Step]:
    """The spread over batches: one solve on each batch (by default for 2..PER_BATCH_MAX batches)."""
    n, bs = hessian_images(ctx, p)
    batches = math.ceil(n / bs)
    wanted = 1 < batches <= PER_BATCH_MAX if p["per_batch"] is None else p["per_batch"]
    if not wanted or batches < 2:
        return []
    each = min(bs, n)  # a solve on one batch reads that batch's images only
    return [_hvp(ctx, probe, products * batches, each, bs, bound=True, note=f"one solve on each of {batches} batches")]


@register_plan("hessian_top_eigs")
def plan_top_eigs(ctx: Any, p: Params) -> List[Step]:
    n, bs = hessian_images(ctx, p)
    k, method = int(p["k"]), p["method"]
    steps = int(p["max_iter"] or max(100, 10 * k)) * (k if method == "power" else 1)
    if method == "lanczos":
        out = [_lanczos(ctx, "hessian_top_eigs", p, k, float(p["tol"]), steps)]
    else:
        out = [_hvp(ctx, "hessian_top_eigs", steps, n, bs, bound=True, note="power iteration")]
    out += _per_batch(ctx, "hessian_top_eigs", p, steps)
    if p["per_block"]:
        blocks = len(default_blocks(ctx.model))
        out.append(_hvp(ctx, "hessian_top_eigs", blocks * steps, n, bs, bound=True, note=f"{blocks} blocks"))
    return out


@register_plan("hessian_trace")
def plan_trace(ctx: Any, p: Params) -> List[Step]:
    n, bs = hessian_images(ctx, p)
    deflate, samples = p["deflate"], int(p["max_iter"])
    if deflate is None:
        out = [_lanczos(ctx, "hessian_trace", p, 2, EIG_TOL, EIG_STEPS)]
    else:
        out = [_hvp(ctx, "hessian_trace", int(deflate), n, bs, note="deflation")] if deflate else []
    out.append(_hvp(ctx, "hessian_trace", samples, n, bs, bound=True, note="Hutchinson probes"))
    return out + _per_batch(ctx, "hessian_trace", p, EIG_STEPS + samples)


@register_plan("hessian_density")
def plan_density(ctx: Any, p: Params) -> List[Step]:
    n, bs = hessian_images(ctx, p)
    return [_hvp(ctx, "hessian_density", int(p["steps"]) * int(p["runs"]), n, bs, note="quadrature")]


@register_plan("loss_landscape_2d")
def plan_landscape(ctx: Any, p: Params) -> List[Step]:
    n, bs = hessian_images(ctx, p)
    grid = int(p["grid"])
    hessian = p["directions"] == "hessian"
    out = [_lanczos(ctx, "loss_landscape_2d", p, 2, float(p["tol"]), EIG_STEPS)] if hessian else []
    return out + [Step("loss_landscape_2d", "loss", grid**2, n, bs, note=f"{grid}x{grid} grid")]


@register_timer("hvp", "loss")
def time_products(ctx: Any, x: torch.Tensor, y: torch.Tensor) -> Dict[str, float]:
    """Seconds per image of the first product (it builds the gradient graph), of each later one
    and of one loss, on up to one Hessian batch of the timing images; per image the graph's saved
    bytes and the first product's peak memory, and how many images' graph a process may keep
    (above that, every product rebuilds it)."""
    b = min(len(x), HESSIAN_BATCH)
    free = free_memory(ctx.device)
    with curvature_mode(ctx.model):
        op = HessianOperator(ctx.model, nn.CrossEntropyLoss(), [(x[:b], y[:b])])
        v = torch.randn(op.n, generator=torch.Generator().manual_seed(0)).to(op.device, op.dtype)
        first, peak = peak_memory_of(lambda: seconds_of(lambda: op.matvec(v), ctx.device), ctx.device)
        later = seconds_of(lambda: op.matvec(v), ctx.device)
        loss = seconds_of(op.loss, ctx.device)
        graph = float(op.graph_bytes or 0.0) / b
        op.release()
    keep = math.floor(graph_budget(free) / graph) if graph > 0 else math.inf
    return {
        "hvp_first": first / b,
        "hvp": later / b,
        "loss": loss / b,
        "graph_bytes": graph,
        "product_bytes": PEAK_OVER_GRAPH * graph if peak is None else peak / b,
        "graph_images": float(keep),
        "free_bytes": float(free),
    }


__all__ = ["hessian_images", "plan_density", "plan_landscape", "plan_top_eigs", "plan_trace", "time_products"]
