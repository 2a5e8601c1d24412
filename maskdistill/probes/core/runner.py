"""``maskdistill analyze``: measure any set of models with the registered probes and write the
paper's Secs. 3-4 evidence side by side.

For each model: load it (``timm:<arch>[@weights][?create_kwargs]`` or a maskdistill run/checkpoint),
build one :class:`~maskdistill.probes.core.context.ProbeContext` (images through the model's own eval
transform), call every selected probe as ``get_probe(name).fn(ctx, **params)`` -- the attention and
representation probes share one streaming forward pass -- and save ``DIR/<NAME>/<probe>.csv/.json
(.npz)``. Results of other models already in DIR are kept and appear in the report; the manifest
``DIR/analyze.json`` records specs, data, probes skipped or failed, and teacher/student pairs.

Probes named explicitly must be able to run (their ``needs`` are checked for each model before any
of its probes runs; a probe that raises stops the analysis);
with ``all``, probes whose needs a model/data cannot meet (e.g. the Hessian probes on a backbone
without a classifier) are skipped with the reason, and a probe that raises is recorded as failed
while the others still run.

Resumable (:mod:`.resume`): started again with the same arguments, the analysis keeps every probe
whose saved result records the same request and redoes only the rest.

Data-parallel under ``torchrun`` (single- or multi-node): every rank loads the models and runs the
same probes in lock-step on its share of the images (the shared pass, the Hessian products, the
landscape's losses and the decisions reduce across the ranks), rank 0 decides what is finished and
alone writes results, the manifest and the report.
"""

from __future__ import annotations

import gc
import logging
import os
import re
import time
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import torch

from maskdistill.data.analysis_data import AnalysisData, parse_data
from maskdistill.models.device import resolve_device
from maskdistill.parallel.collectives import gather_objects
from maskdistill.parallel.group import Dist, barrier, init_distributed
from maskdistill.probes.core.context import ProbeContext
from maskdistill.probes.core.intervals import REPLICATES, Bootstrap
from maskdistill.probes.core.manifest import FIGURES, MANIFEST, model_entry, read_manifest, record_model, write_json
from maskdistill.probes.core.registry import ProbeSpec, resolve_probes
from maskdistill.probes.core.resume import REQUEST, finished_probes, model_request, normalised, probe_request

log = logging.getLogger(__name__)
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")


def check_names(models: Mapping[str, str], pairs: Sequence[Tuple[str, str]], known: Sequence[str] = ()) -> None:
    """Model names must be plain folder names (not the report's figure folder); both sides of every
    teacher/student pair must be models of this analysis or of the output folder (``known``)."""
    for name in models:
        if not NAME_RE.match(name) or name == FIGURES:
            raise ValueError(
                f"model name {name!r} must be a plain folder name (letters, digits, _ . + -), "
                f"not {FIGURES!r}; e.g. --model clip=timm:vit_base_patch16_clip_224.openai."
            )
    names = set(models) | set(known)
    for t, s in pairs:
        for n in (t, s):
            if n not in names:
                raise ValueError(
                    f"--pair {t}={s}: {n!r} is not a model of this analysis or of the output folder "
                    f"(models: {', '.join(sorted(names))})."
                )
        if t == s:
            raise ValueError(f"--pair {t}={s}: teacher and student must differ.")


def _default_workers(device: torch.device) -> int:
    return 0 if device.type == "cpu" else min(8, max(1, (os.cpu_count() or 2) - 1))


def select_probes(
    probes: str | Sequence[str], params: Optional[Mapping[str, Mapping[str, Any]]]
) -> Tuple[List[ProbeSpec], Dict[str, Dict[str, Any]], bool]:
    """(specs, their parameters, whether the probes were named explicitly) for ``--probes``/``--param``."""
    explicit = not (isinstance(probes, str) and probes.strip() == "all")
    specs: List[ProbeSpec] = resolve_probes(probes)  # an unknown name raises, listing the registered ones
    if not specs:
        raise ValueError("--probes selects no probe; give names (comma-separated) or 'all'.")
    chosen = {k: dict(v) for k, v in (params or {}).items()}
    unknown = set(chosen) - {s.name for s in specs}
    if unknown:
        raise ValueError(f"parameters given for probe(s) not selected: {', '.join(sorted(unknown))}.")
    return specs, chosen, explicit


def _skipped(
    ctx: ProbeContext, specs: Sequence[ProbeSpec], params: Mapping[str, Mapping[str, Any]], explicit: bool
) -> Dict[str, str]:
    """probe -> why this model/data cannot serve it; a probe named explicitly raises instead."""
    skipped: Dict[str, str] = {}
    for s in specs:
        reasons = ctx.missing(s.needs, params.get(s.name, {}))
        if reasons and explicit:
            raise ValueError(f"probe {s.name} cannot run on model {ctx.name}: {'; '.join(reasons)}.")
        if reasons:
            skipped[s.name] = "; ".join(reasons)
            log.info("%s: skipping %s (%s)", ctx.name, s.name, skipped[s.name])
    return skipped


def _run_probes(
    ctx: ProbeContext,
    specs: Sequence[ProbeSpec],
    params: Mapping[str, Mapping[str, Any]],
    explicit: bool,
    skipped: Mapping[str, str],
    folder: Path,
    request: Mapping[str, Any],
) -> Tuple[List[Path], Dict[str, str]]:
    """Run every probe not skipped and save its result in ``folder`` (rank 0 only), recording the
    request that made it: (CSV paths, probe -> failure)."""
    written: List[Path] = []
    failed: Dict[str, str] = {}
    for s in specs:
        if s.name in skipped:
            continue
        try:
            t1 = time.perf_counter()
            res = s.fn(ctx, **params.get(s.name, {}))
            res.meta.setdefault("seconds", round(time.perf_counter() - t1, 3))
            res.meta["processes"] = ctx.world.world
            res.meta[REQUEST] = probe_request(request, params.get(s.name, {}))
            if ctx.world.main:
                written.append(res.save(folder))
        except Exception as e:
            if explicit:
                raise
            failed[s.name] = f"{type(e).__name__}: {e}"
            if ctx.world.main:  # every rank fails alike; one line is enough
                log.error("%s: probe %s failed: %s", ctx.name, s.name, failed[s.name])
    return written, failed


def _analyse_model(
    name: str,
    spec: str,
    ds: AnalysisData,
    dev: torch.device,
    settings: Mapping[str, Any],
    selection: Tuple[Sequence[ProbeSpec], Mapping[str, Mapping[str, Any]], bool],
    out: Path,
    manifest: Dict[str, Any],
    resume: bool = True,
) -> List[Path]:
    """Load one model, run its probes not finished before (all of them without ``resume``) into
    ``out/<name>`` and record it in the manifest (rank 0 writes; every rank computes)."""
    specs, params, explicit = selection
    world: Dist = settings["world"]
    t0 = time.perf_counter()
    base = model_request(spec, ds.spec, settings, dev.type)
    request = normalised(dict(base, params={s.name: dict(params.get(s.name, {})) for s in specs}))
    entry = manifest["models"].get(name)
    # rank 0 decides what is finished (its file system holds the results) and tells the others
    names = [s.name for s in specs]
    found = finished_probes(out / name, names, params, base, entry, request) if resume else ([], {})
    kept, before = gather_objects(found, world)[0]
    todo = [s for s in specs if s.name not in kept and s.name not in before]
    if not todo:
        log.info("%s: every probe finished before (%s); kept", name, ", ".join(sorted(kept)) or "none to run")
        if (entry or {}).get("request") != request:  # killed after its last result, before the manifest
            light = dict(spec=spec, data=ds.spec, probes=sorted(kept), skipped=before, resumed=sorted(kept))
            record_model(manifest, name, dict(light, request=request), out, world.main)
        return []
    if kept:
        rest = ", ".join(s.name for s in todo)
        log.info("%s: keeping the finished %s; running %s", name, ", ".join(sorted(kept)), rest)
    ctx = ProbeContext.from_spec(name, spec, ds, dev, **settings, wanted={s.name for s in todo})
    ctx.check_shares()
    skipped = _skipped(ctx, todo, params, explicit)
    paths, failed = _run_probes(ctx, todo, params, explicit, skipped, out / name, base)
    done = set(kept) | {s.name for s in todo if s.name not in skipped and s.name not in failed}
    record = model_entry(ctx, spec, [s for s in specs if s.name in done], {}, failed, time.perf_counter() - t0)
    record.update(skipped={**before, **skipped}, resumed=sorted(kept), request=request)
    record_model(manifest, name, record, out, world.main)
    log.info("%s: %d probe(s) in %.1fs", name, len(todo) - len(skipped) - len(failed), time.perf_counter() - t0)
    del ctx
    gc.collect()
    if dev.type == "cuda":
        torch.cuda.empty_cache()
    return paths


def check_settings(
    models: Mapping[str, str], images: int, batch_size: int, bootstrap: int, seed: int, hessian: Optional[int] = None
) -> Optional[Bootstrap]:
    """The bootstrap settings of an analysis, after checking its counts."""
    if hessian is not None and hessian < 1:
        raise ValueError(f"--hessian-images {hessian}: give at least 1 (or leave it out).")
    if not models:
        raise ValueError("give at least one model: --model NAME=SPEC (e.g. deit=timm:deit_small_patch16_224).")
    if images < 1 or batch_size < 1:
        raise ValueError(f"--images {images} / --batch-size {batch_size}: both must be at least 1.")
    if bootstrap < 0 or bootstrap == 1:
        raise ValueError(f"--bootstrap {bootstrap}: give 0 (no intervals) or at least 2 replicates (default 1000).")
    return Bootstrap(replicates=bootstrap, seed=seed) if bootstrap else None


def run_analyze(
    models: Mapping[str, str],
    data: str | AnalysisData,
    probes: str | Sequence[str] = "all",
    out: str | Path = "analysis",
    images: int = 256,
    batch_size: int = 64,
    device: str = "auto",
    seed: int = 0,
    pairs: Sequence[Tuple[str, str]] = (),
    params: Optional[Mapping[str, Mapping[str, Any]]] = None,
    workers: Optional[int] = None,
    progress: bool = True,
    bootstrap: int = REPLICATES,
    labels: str = "by-name",
    max_unreadable_share: Optional[float] = None,
    hessian_images: Optional[int] = None,
    world: Optional[Dist] = None,
    resume: bool = True,
) -> List[Path]:
    """Run the probes on every model; returns the CSV paths written (the report is built apart, from
    the files). ``bootstrap``: replicates of the intervals (0: none); ``labels``: see :mod:`.labels`;
    unreadable images: data/readable.py; ``hessian_images``: images of the curvature probes (None:
    their own ``n_batches`` x ``batch_size``); ``world``: the process group (default: torchrun's,
    or one process); ``resume``: keep the probes finished before with the same request (False: redo
    and replace every one)."""
    boot = check_settings(models, images, batch_size, bootstrap, seed, hessian_images)
    specs, params, explicit = select_probes(probes, params)
    out = Path(out)
    dev = resolve_device(device)
    world = world or init_distributed(dev)
    if world.main:
        out.mkdir(parents=True, exist_ok=True)
    barrier(world)
    manifest = read_manifest(out)
    check_names(models, pairs, known=list(manifest["models"]))
    ds = parse_data(data) if isinstance(data, str) else data
    ds.max_unreadable_share = ds.max_unreadable_share if max_unreadable_share is None else max_unreadable_share
    settings = dict(
        images=images,
        batch_size=batch_size,
        seed=seed,
        workers=_default_workers(dev) if workers is None else workers,
        progress=progress,
        bootstrap=boot,
        labels=labels,
        hessian_images=hessian_images,
        world=world,
    )
    written: List[Path] = []
    for name, spec in models.items():
        written += _analyse_model(name, spec, ds, dev, settings, (specs, params, explicit), out, manifest, resume)
    for t, s in pairs:
        if [t, s] not in manifest["pairs"]:
            manifest["pairs"].append([t, s])
    if world.main:
        write_json(out / MANIFEST, manifest)
    barrier(world)  # the others return once the files are there (e.g. for a report built next)
    return written


__all__ = ["check_names", "check_settings", "run_analyze", "select_probes"]
