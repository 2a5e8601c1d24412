"""The manifest of an analysis folder, ``DIR/analyze.json``: for every analysed model its spec,
data, images, probes run, skipped (with the reason) or failed, and the teacher/student pairs whose
claims the report states. The runner writes it; the report reads it."""

from __future__ import annotations

import datetime as _dt
import json
import os
from pathlib import Path
from typing import Any, Dict, Mapping, Sequence

MANIFEST = "analyze.json"
FIGURES = "figures"  # the report's figure folder inside DIR; no model may take its name


def read_manifest(out: Path) -> dict:
    """The manifest of ``out`` (empty lists and dicts when there is none yet)."""
    p = Path(out) / MANIFEST
    if not p.is_file():
        return {"models": {}, "order": [], "pairs": []}
    m = json.loads(p.read_text())
    m.setdefault("models", {}), m.setdefault("order", []), m.setdefault("pairs", [])
    return m


def write_json(path: Path, obj: Any) -> None:
    """Write ``obj`` as JSON atomically (a temporary file renamed into place)."""
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(obj, indent=1, default=str) + "\n")
    os.replace(tmp, path)


def model_entry(
    ctx: Any,
    spec: str,
    specs: Sequence[Any],
    skipped: Mapping[str, str],
    failed: Mapping[str, str],
    seconds: float,
) -> Dict[str, Any]:
    """What ``analyze.json`` records of one analysed model."""
    stats = ctx.memo.get("shared")
    ran = sorted(s.name for s in specs if s.name not in skipped and s.name not in failed)
    speed = round(stats.n_images / stats.seconds, 2) if stats and stats.seconds else None
    return {
        "spec": spec,
        "processes": ctx.world.world,
        "data": ctx.data.spec,
        "images": stats.n_images if stats else ctx.images,
        "seed": ctx.seed,
        "batch_size": ctx.batch_size,
        "device": str(ctx.device),
        "probes": ran,
        "skipped": dict(skipped),
        "failed": dict(failed),
        "seconds": round(seconds, 2),
        "images_per_second_shared_pass": speed,
        "unreadable_images": list(getattr(ctx.memo.get("dataset"), "unreadable", []))
        + list(ctx.memo.get("unreadable_stimuli", [])),
        "finished": _dt.datetime.now().isoformat(timespec="seconds"),
    }


def record_model(manifest: Dict[str, Any], name: str, entry: Dict[str, Any], out: Path, main: bool) -> None:
    """Put one model's entry into the manifest and write it (rank 0)."""
    manifest["models"][name] = entry
    if name not in manifest["order"]:
        manifest["order"].append(name)
    if main:
        write_json(out / MANIFEST, manifest)


__all__ = ["MANIFEST", "FIGURES", "model_entry", "read_manifest", "record_model", "write_json"]
