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

import pandas as pd
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
    rebuilt: bool = False  # hvp: every product rebuilds the gradient graph (too many images to cache it)

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
    brings (e.g. Hessian-vector products) on the timing batch."""

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
def estimate(step: Step, world: Dist, seconds: Mapping[str, float]) -> float:
    """Seconds of one step on the biggest process share."""
    n = step.per_process(world)
    if step.unit == "hvp":
        later = seconds.get("hvp", math.nan) * n
        first = seconds.get("hvp_first", math.nan) * n
        # a cached graph pays the first product once; a rebuilt one every time
        return first * step.count if step.rebuilt else first + later * (step.count - 1)
    if step.unit in ("pass", "forward"):
        return seconds.get(step.unit, math.nan) * n * step.count
    return seconds.get(step.unit, math.nan) * n * step.count


def work(step: Step, world: Dist) -> str:
    """The work of a step in words, e.g. "≤ 100 Hessian-vector products over 32 images"."""
    if step.unit in ("pass", "forward"):
        count = step.passes(world) * step.count
        return f"{count} {_units(step.unit, count)} of ≤ {step.batch} images per process"
    bound = "≤ " if step.bound else ""
    return f"{bound}{step.count} {_units(step.unit, step.count)} over {step.images} images"


def _units(unit: str, count: int) -> str:
    """The unit's words, singular for one."""
    words = UNITS[unit]
    if count != 1:
        return words
    return words.replace("passes", "pass").replace("products", "product").replace("evaluations", "evaluation")


def duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    if seconds < 90:
        return f"{seconds:.1f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def rows(model: str, steps: Sequence[Step], world: Dist, seconds: Mapping[str, float]) -> List[Dict[str, Any]]:
    """The plan's rows of one model (a shared step appears once, under the first probe)."""
    first: Dict[str, str] = {}
    out: List[Dict[str, Any]] = []
    for s in steps:
        if s.shared and s.shared in first:
            what = f"shares the {s.shared.split('|')[0]} of {first[s.shared]}"
            out.append(dict(model=model, probe=s.probe, images=s.images, work=what, seconds=0.0))
            continue
        if s.shared:
            first[s.shared] = s.probe
        count = s.passes(world) * s.count if s.unit in ("pass", "forward") else s.count
        out.append(
            dict(
                model=model,
                probe=s.probe,
                images=s.images,
                unit=s.unit,
                count=count,
                bound=s.bound,
                work=work(s, world) + (f" ({s.note})" if s.note else ""),
                seconds=estimate(s, world, seconds),
            )
        )
    return out


def render(plan: pd.DataFrame, world: Dist, device: str) -> str:
    """The printed plan: one line per model and probe, the estimate, and each model's total."""
    lines = [f"plan on {world.world} process(es), device {device} (times from one measured batch):"]
    if "bound" in plan and plan["bound"].fillna(False).astype(bool).any():
        lines.append("  (≤: a solver's budget; it may converge sooner, and its time is that of the budget)")
    for model, g in plan.groupby("model", sort=False):
        total = float(g["seconds"].fillna(0).sum())
        lines.append(f"  {model}: about {duration(total)}")
        for r in g.itertuples(index=False):
            est = "" if r.work.startswith(("shares", "finished", "skipped")) else f"  ~{duration(r.seconds)}"
            lines.append(f"    {r.probe:28s} {int(r.images):>7d} images  {r.work}{est}")
    return "\n".join(lines)


__all__ = [
    "Step",
    "SHARED_PASS",
    "UNITS",
    "analysed_images",
    "duration",
    "estimate",
    "measure",
    "probe_steps",
    "register_plan",
    "register_timer",
    "render",
    "seconds_of",
    "rows",
    "shared_pass_step",
    "timing_batch",
]
