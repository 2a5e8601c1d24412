"""``maskdistill analyze --dry-run``: the plan of an analysis before it runs -- per model and probe
the images it reads, the forward passes or Hessian-vector products it expects, and an estimated
time -- measured on one timing batch of the chosen device and process count, loading no image
beyond that batch (the image counts come from the file listing).

A probe family says what each of its probes costs (:func:`register_plan`: ``fn(ctx, params) ->
[Step]``, with the probe's parameters as the probe itself would see them, defaults filled in from its
signature); the attention/representation probes share one streaming pass, which this module plans
itself. The counts are those the run then does: a pass is ``ceil(images per process / batch)``
forward passes, a solver's products are bounded by its budget (a bound is printed as "≤"),
quadrature and landscape counts are exact. Steps with the same ``shared`` key (the one Lanczos run
behind λ, the trace's deflation and the landscape's directions) run once.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Mapping, Sequence

import torch

from maskdistill.parallel.group import Dist

UNITS = {
    "pass": "forward passes (captured)",
    "forward": "forward passes",
    "hvp": "Hessian-vector products",
    "loss": "loss evaluations",
}


@dataclass(frozen=True)
class Step:
    """One kind of work of a probe: ``count`` units over ``images`` images (all processes), in
    batches of ``batch``; ``bound``: ``count`` is the solver's budget, the run may stop earlier;
    ``shared``: steps with the same key run once per model (the first probe pays); the key's part
    before "|" names the work in the plan."""

    probe: str
    unit: str  # one of UNITS
    count: int  # sweeps for pass/forward; products for hvp; evaluations for loss
    images: int
    batch: int
    bound: bool = False
    shared: str = ""
    note: str = ""

    def per_process(self, world: Dist) -> int:
        """Images of the biggest process share."""
        return math.ceil(self.images / world.world)

    def passes(self, world: Dist) -> int:
        """Forward passes per process for one sweep over the images."""
        return math.ceil(self.per_process(world) / max(1, self.batch))


PlanFn = Callable[..., List[Step]]
TimerFn = Callable[[Any, torch.Tensor, torch.Tensor], Dict[str, float]]
_PLANS: Dict[str, PlanFn] = {}
_TIMERS: Dict[str, TimerFn] = {}


def register_plan(probe: str) -> Callable[[PlanFn], PlanFn]:
    """Decorator: ``fn(ctx, params) -> [Step]`` says what ``probe`` costs on a probe context (whose
    model is loaded; it must not read images); ``params``: every parameter of the probe."""

    def deco(fn: PlanFn) -> PlanFn:
        _PLANS[probe] = fn
        return fn

    return deco


SHARED_PASS = "shared pass"


def register_timer(*units: str) -> Callable[[TimerFn], TimerFn]:
    """Decorator: ``fn(ctx, images, labels) -> {unit: seconds per image}`` times the units a family
    brings (e.g. Hessian-vector products) on the timing batch; the Hessian's timer adds what its
    graph takes (per image ``graph_bytes`` saved and ``product_bytes`` at the peak of a product,
    ``graph_images``: the most images whose graph a process keeps between products,
    ``free_bytes``: the free memory it measured against)."""

    def deco(fn: TimerFn) -> TimerFn:
        for u in units:
            _TIMERS[u] = fn
        return fn

    return deco


def shared_pass_step(ctx: Any, probes: Sequence[str]) -> Step:
    """The one streaming pass behind the attention/representation probes."""
    note = "attention and tokens of " + ", ".join(probes)
    return Step(SHARED_PASS, "pass", 1, analysed_images(ctx), int(ctx.batch_size), note=note)


def analysed_images(ctx: Any) -> int:
    """``--images`` capped at what the data holds, from the listing (no image is decoded)."""
    n = int(ctx.images)
    if ctx.data.kind == "builtin":
        return min(n, int(ctx.data.options.get("images") or n))
    return min(n, len(ctx.data.dataset(None)))


def probe_steps(ctx: Any, probe: str, params: Mapping[str, Any]) -> List[Step]:
    """What ``probe`` costs (a probe with no plan of its own: one forward pass over the images)."""
    import inspect

    from maskdistill.probes.core.registry import get_probe

    fn = _PLANS.get(probe)
    if fn is None:
        return [Step(probe, "forward", 1, analysed_images(ctx), int(ctx.batch_size), note="no plan of its own")]
    call = inspect.signature(get_probe(probe).fn).bind(ctx, **dict(params))  # an unknown parameter raises
    call.apply_defaults()
    return fn(ctx, dict(list(call.arguments.items())[1:]))


# ---------------------------------------------------------------------------------------- timing
def timing_batch(ctx: Any) -> List[Any]:
    """The first ``batch_size`` readable images of the seeded order (the only images a plan loads)."""
    import numpy as np

    from maskdistill.data.readable import unreadable_reason

    ds = ctx.data.dataset(ctx.transform(), num_images=int(ctx.batch_size))
    order = range(len(ds)) if ctx.data.kind == "builtin" else np.random.default_rng(int(ctx.seed)).permutation(len(ds))
    items = []
    for i in order:
        samples = getattr(ds, "samples", None)
        if samples is not None and unreadable_reason(samples[int(i)][0]):
            continue
        items.append(ds[int(i)])
        if len(items) == int(ctx.batch_size):
            break
    if not items:
        raise ValueError(f"the data {ctx.data.spec} gave no readable image to time.")
    return items


def seconds_of(fn: Callable[[], Any], device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - t


def measure(ctx: Any, units: Sequence[str], shared_probes: Sequence[str]) -> Dict[str, float]:
    """Seconds per image of each unit on one timing batch (the second of two runs: no warm-up)."""
    from torch.utils.data import TensorDataset

    items = timing_batch(ctx)
    x = torch.stack([it[0] for it in items])
    y = torch.zeros(len(items), dtype=torch.long)
    out: Dict[str, float] = {}
    if "pass" in units:
        from maskdistill.probes.core.registry import shared_groups
        from maskdistill.probes.core.shared_pass import run_shared_pass

        timing = _timing_context(ctx, TensorDataset(x, y), shared_probes)
        groups = shared_groups(set(shared_probes))
        run_shared_pass(timing, groups)
        out["pass"] = run_shared_pass(timing, groups).seconds / len(x)
    out["image_bytes"] = float(x[0].numel() * x.element_size())
    xd = x.to(ctx.device)
    if "forward" in units:
        with torch.inference_mode(), ctx.autocast():
            ctx.model(xd)
            out["forward"] = seconds_of(lambda: ctx.model(xd), ctx.device) / len(x)
    for unit in sorted(set(units) - set(out)):
        if unit in _TIMERS and unit not in out:
            out.update(_TIMERS[unit](ctx, xd, y.to(ctx.device)))
    return out


def _timing_context(ctx: Any, data: Any, probes: Sequence[str]) -> Any:
    from dataclasses import replace

    from maskdistill.parallel.group import SINGLE

    timing = replace(ctx, images=len(data), world=SINGLE, progress=False, bootstrap=None, wanted=set(probes), memo={})
    timing.memo["dataset"] = data
    return timing


# ---------------------------------------------------------------------------------------- estimate
def graph_kept(step: Step, world: Dist, measured: Mapping[str, float]) -> bool:
    """Whether the products of ``step`` keep the gradient graph (HessianOperator's rule: one batch's
    graph always; more while it fits the measured share of free memory)."""
    n = step.per_process(world)
    return n <= step.batch or n <= measured.get("graph_images", math.inf)


def estimate(step: Step, world: Dist, measured: Mapping[str, float]) -> float:
    """Seconds of one step on the biggest process share."""
    n = step.per_process(world)
    if step.unit == "hvp":
        later = measured.get("hvp", math.nan) * n
        first = measured.get("hvp_first", math.nan) * n
        # a kept graph pays the first product once; a rebuilt one every time
        return first + later * (step.count - 1) if graph_kept(step, world, measured) else first * step.count
    return measured.get(step.unit, math.nan) * n * step.count


def memory(step: Step, world: Dist, measured: Mapping[str, float]) -> float:
    """Peak bytes of a process in a curvature step: its share of the images (kept on the device for
    every product or evaluation) and, for products, the measured peak per image of building the
    gradient graph and taking a product through it, for all of the share's images or one batch's
    when the graph is rebuilt; NaN for the streaming passes, which hold one batch at a time."""
    if step.unit not in ("hvp", "loss"):
        return math.nan
    n = step.per_process(world)
    held = measured.get("image_bytes", math.nan) * n
    if step.unit == "hvp":
        graph = n if graph_kept(step, world, measured) else min(n, step.batch)
        held += measured.get("product_bytes", math.nan) * graph
    return held


__all__ = [
    "UNITS",
    "Step",
    "SHARED_PASS",
    "analysed_images",
    "estimate",
    "graph_kept",
    "memory",
    "measure",
    "probe_steps",
    "register_plan",
    "register_timer",
    "seconds_of",
    "shared_pass_step",
    "timing_batch",
]
