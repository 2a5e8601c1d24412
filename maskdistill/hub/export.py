"""``maskdistill export``: a run's network (an MD student, a classifier, a fine-tune) in timm's hub
layout with its model card, so that ``timm.create_model("local-dir:DIR", pretrained=True)`` -- or
``hf-hub:<org>/<name>`` once the folder is uploaded -- rebuilds it with identical outputs."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any, Dict, Optional

from timm.data import resolve_data_config

from maskdistill.hub.card import CardFacts, model_card
from maskdistill.hub.layout import Preprocessing, check_out, write_hub_folder
from maskdistill.models.backbone import load_backbone
from maskdistill.report.markdown import read_claims_markdown
from maskdistill.runs.checkpoint import find_checkpoint, read_meta


def _last_row(path: Path) -> Dict[str, float]:
    if not path.is_file():
        return {}
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    return {k: float(v) for k, v in rows[-1].items() if v not in ("", None)} if rows else {}


def run_metrics(run_dir: Path, meta: Dict[str, Any]) -> Dict[str, float]:
    """The numbers the card reports: steps, the last training loss, the last evaluation and, for a
    fine-tune, the best evaluation (``best/``) -- all read from the run folder's files."""
    out: Dict[str, float] = {"steps": float(meta.get("step", 0))}
    train = _last_row(run_dir / "metrics.csv")
    if "loss" in train:
        out["final training loss"] = train["loss"]
    for k, v in _last_row(run_dir / "metrics_eval.csv").items():
        if k not in ("step", "epoch"):
            out[f"final {k}"] = v
    best = run_dir / "best" / "meta.json"
    for k, v in (json.loads(best.read_text()).get("metrics", {}) if best.is_file() else {}).items():
        out[f"best {k}"] = float(v)
    for k, v in (meta.get("metrics") or {}).items():  # a best/ checkpoint given as the source
        out.setdefault(f"best {k}", float(v))
    return out


def _preprocessing(model: Any, info: Dict[str, Any], cfg: Dict[str, Any]) -> Preprocessing:
    """The input the network was trained and evaluated with: the run's mean/std and image size; the
    evaluation crop and interpolation of a fine-tune's config, else the architecture's own."""
    dc = resolve_data_config({}, model=model)
    data = cfg.get("data", {}) if isinstance(cfg.get("data"), dict) else {}
    return Preprocessing(
        img_size=int(info.get("img_size") or dc["input_size"][-1]),
        mean=list(info.get("mean") or dc["mean"]),
        std=list(info.get("std") or dc["std"]),
        crop_pct=float(data.get("crop_pct") or dc.get("crop_pct") or 1.0),
        interpolation=str(data.get("interpolation") or dc.get("interpolation") or "bicubic"),
        label_names=[str(c) for c in info.get("classes") or []],
    )


def export_run(
    source: str | Path, out: str | Path, analysis: Optional[str | Path] = None, overwrite: bool = False
) -> Path:
    """Export the network of a run or checkpoint folder (also a fine-tune's ``best/``) to ``out``."""
    out = Path(out).expanduser()
    check_out(out, overwrite)  # before any weights are read
    claims = read_claims_markdown(Path(analysis)) if analysis else None
    ck = find_checkpoint(source)
    meta = read_meta(ck)
    if not meta.get("backbone"):
        raise ValueError(f"checkpoint {ck} has no exported backbone; it was not written by a maskdistill training job.")
    model, info = load_backbone(ck)
    run_dir = ck.parent.parent if ck.parent.name == "checkpoints" else ck.parent
    cfg = meta.get("config") or {}
    pre = _preprocessing(model, info, cfg)
    facts = CardFacts(
        name=out.name,
        kind=str(meta.get("kind", "")),
        arch=str(info["arch"]),
        config=cfg,
        metrics=run_metrics(run_dir, meta),
        label_names=pre.label_names,
        claims=claims,
    )
    return write_hub_folder(model, out, pre, dict(info.get("kwargs") or {}), model_card(facts), overwrite=overwrite)


__all__ = ["export_run", "run_metrics"]
