"""The plan of ``analyze --dry-run`` as rows (one per model and step, :func:`rows`) and as the
printed text (:func:`render`): the work in words, the estimated time, and for the curvature steps
the peak memory of a process, with a warning where it exceeds the free memory (:mod:`.plan` counts
and estimates)."""

from __future__ import annotations

import math
from typing import Any, Dict, List, Mapping, Sequence

import pandas as pd

from maskdistill.parallel.group import Dist
from maskdistill.probes.core.plan import UNITS, Step, estimate, graph_kept, memory


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


def rows(model: str, steps: Sequence[Step], world: Dist, measured: Mapping[str, float]) -> List[Dict[str, Any]]:
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
                work=work(s, world) + (f" ({s.note})" if s.note else "") + _graph_words(s, world, measured),
                seconds=estimate(s, world, measured),
                memory=memory(s, world, measured),
                free=measured.get("free_bytes", math.nan),
            )
        )
    return out


def _graph_words(step: Step, world: Dist, measured: Mapping[str, float]) -> str:
    if step.unit != "hvp" or step.per_process(world) <= step.batch or "graph_images" not in measured:
        return ""
    return ", graph kept" if graph_kept(step, world, measured) else ", graph rebuilt for each product"


def gigabytes(n: float) -> str:
    return f"{n / 2**30:.1f} GB" if n >= 2**30 / 10 else f"{n / 2**20:.0f} MB"


def render(plan: pd.DataFrame, world: Dist, device: str) -> str:
    """The printed plan: one line per model and probe, the estimate, and each model's total."""
    lines = [f"plan on {world.world} process(es), device {device} (times from one measured batch):"]
    if "bound" in plan and plan["bound"].fillna(False).astype(bool).any():
        lines.append("  (≤: a solver's budget; it may converge sooner, and its time is that of the budget)")
    for model, g in plan.groupby("model", sort=False):
        total = float(g["seconds"].fillna(0).sum())
        lines.append(f"  {model}: about {duration(total)}")
        for r in g.to_dict("records"):
            est = "" if r["work"].startswith(("shares", "finished", "skipped")) else f"  ~{duration(r['seconds'])}"
            mem = r.get("memory", math.nan)
            held = f"  peak ~{gigabytes(mem)} per process" if isinstance(mem, float) and math.isfinite(mem) else ""
            lines.append(f"    {r['probe']:28s} {int(r['images']):>7d} images  {r['work']}{est}{held}")
        lines += _memory_warning(g)
    return "\n".join(lines)


def _memory_warning(g: pd.DataFrame) -> List[str]:
    """A line when a step would hold more than the free memory measured on the device."""
    if "memory" not in g or "free" not in g:
        return []
    over = g[g["memory"].fillna(0) > g["free"].fillna(math.inf)]
    if over.empty:
        return []
    names = ", ".join(dict.fromkeys(over["probe"]))
    most, free = float(over["memory"].max()), float(over["free"].iloc[0])
    return [
        f"    ! {names} would hold up to {gigabytes(most)} per process, more than the "
        f"{gigabytes(free)} free: run on more processes or pass fewer --hessian-images."
    ]


__all__ = ["duration", "gigabytes", "render", "rows", "work"]
