"""The manifest of an analysis folder, ``DIR/analyze.json``: for every analysed model its spec,
data, images, probes run, skipped (with the reason) or failed, and the teacher/student pairs whose
claims the report states. The runner writes it; the report reads it."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

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


__all__ = ["MANIFEST", "FIGURES", "read_manifest", "write_json"]
