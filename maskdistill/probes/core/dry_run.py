"""``maskdistill analyze ... --dry-run``: load each model, count the images from the listing, time
one batch on the chosen device, and print per model and probe the images, the passes or products
it expects and an estimated time (:mod:`.plan`); nothing is written. Under torchrun the counts and
times are per process, for the job's process count, and rank 0 prints."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence

import pandas as pd

from maskdistill.data.analysis_data import parse_data
from maskdistill.models.device import resolve_device
from maskdistill.parallel.group import Dist, init_distributed
from maskdistill.probes.core.context import ProbeContext
from maskdistill.probes.core.plan import measure, probe_steps, shared_pass_step
from maskdistill.probes.core.plan_table import rows
from maskdistill.probes.core.resume import finished, model_request, probe_request
from maskdistill.probes.core.runner import check_names, check_settings, select_probes


def _settings(images: int, batch_size: int, seed: int, labels: str, hessian_images: Optional[int]) -> Dict[str, Any]:
    return dict(images=images, batch_size=batch_size, seed=seed, labels=labels, hessian_images=hessian_images)


def plan_analyze(
    models: Mapping[str, str],
    data: str,
    probes: str | Sequence[str] = "all",
    out: Optional[str | Path] = None,
    images: int = 256,
    batch_size: int = 64,
    device: str = "auto",
    seed: int = 0,
    params: Optional[Mapping[str, Mapping[str, Any]]] = None,
    hessian_images: Optional[int] = None,
    labels: str = "by-name",
    bootstrap: int = 1000,
    world: Optional[Dist] = None,
) -> pd.DataFrame:
    """The plan of ``run_analyze`` with the same arguments, one row per model and probe: images,
    unit, count (per process for passes), bound (count is a budget), work (in words), seconds
    (estimated) -- probes finished before in ``out`` and probes this model cannot serve say so."""
    from maskdistill.parallel.collectives import gather_objects

    boot = check_settings(models, images, batch_size, bootstrap, seed, hessian_images)
    specs, params, explicit = select_probes(probes, params)
    check_names(models, [])
    dev = resolve_device(device)
    world = world or init_distributed(dev)
    ds = parse_data(data)
    settings = _settings(images, batch_size, seed, labels, hessian_images)
    out_rows: List[Dict[str, Any]] = []
    for name, spec in models.items():
        ctx = ProbeContext.from_spec(name, spec, ds, dev, **settings, world=world, bootstrap=None, progress=False)
        base = model_request(spec, ds.spec, dict(settings, bootstrap=boot), dev.type)
        done = [
            s.name
            for s in specs
            if out is not None and finished(Path(out) / name, s.name, probe_request(base, params.get(s.name, {})))
        ]
        done = gather_objects(done, world)[0]
        todo, lines = [], []
        for s in specs:
            reasons = [] if s.name in done else ctx.missing(s.needs, params.get(s.name, {}))
            if reasons and explicit:
                raise ValueError(f"probe {s.name} cannot run on model {name}: {'; '.join(reasons)}.")
            if s.name in done or reasons:
                why = "finished before: kept" if s.name in done else f"skipped: {'; '.join(reasons)}"
                lines.append(dict(model=name, probe=s.name, images=0, work=why, seconds=0.0))
            else:
                todo.append(s)
        shared = [s.name for s in todo if s.shared]
        steps = [shared_pass_step(ctx, shared)] if shared else []
        for s in todo:
            if not s.shared:
                steps += probe_steps(ctx, s.name, params.get(s.name, {}))
        if steps:
            seconds = measure(ctx, {st.unit for st in steps}, shared)
            out_rows += rows(name, steps, world, seconds)
        out_rows += lines
        del ctx
    return pd.DataFrame(out_rows)


__all__ = ["plan_analyze"]
