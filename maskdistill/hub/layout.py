"""The folder a model is shared in: timm's Hugging Face hub layout -- ``config.json`` (architecture,
``num_classes``, ``model_args`` and a ``pretrained_cfg`` with input size, mean/std, crop,
interpolation and ``label_names``), ``model.safetensors`` and a ``README.md`` model card. timm writes
the first two (``timm.models.save_for_hf``); this module fills in the preprocessing the model was
trained with, writes the card, and checks that ``timm.create_model("local-dir:DIR", pretrained=True)``
rebuilds the same weights. The same folder uploaded as is serves ``hf-hub:<org>/<name>``."""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Sequence

import timm
import torch
from timm.models import save_for_hf
from torch import nn

from maskdistill.errors import UsageError

# Fields of the source architecture's pretrained_cfg that describe someone else's weights.
_FOREIGN = ("tag", "hf_hub_id", "url", "license", "paper_ids", "paper_name", "origin_url", "notes", "test_input_size")


@dataclass
class Preprocessing:
    """How the model's input was made: timm's eval transform settings."""

    img_size: int
    mean: Sequence[float]
    std: Sequence[float]
    crop_pct: float = 1.0
    interpolation: str = "bicubic"
    label_names: List[str] = field(default_factory=list)


def check_out(out: Path, overwrite: bool) -> None:
    """Refuse to write into a folder that holds files unless ``overwrite``."""
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file; give a folder.")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise FileExistsError(f"{out} is not empty; pass --overwrite to replace it or choose another --out folder.")


def _fix_config(path: Path, pre: Preprocessing, num_classes: int) -> Dict[str, Any]:
    cfg = json.loads(path.read_text())
    pc = cfg["pretrained_cfg"]
    for key in _FOREIGN:
        pc.pop(key, None)
    pc.update(
        input_size=[pc.get("input_size", [3])[0], pre.img_size, pre.img_size],
        mean=[float(v) for v in pre.mean],
        std=[float(v) for v in pre.std],
        crop_pct=float(pre.crop_pct),
        interpolation=pre.interpolation,
        num_classes=num_classes,
    )
    pc.pop("label_names", None)
    if pre.label_names and num_classes:
        if len(pre.label_names) != num_classes:
            raise ValueError(f"{len(pre.label_names)} label names for a head of {num_classes} classes.")
        pc["label_names"] = list(pre.label_names)
        cfg["label_names"] = list(pre.label_names)  # timm reads the top-level field too
    path.write_text(json.dumps(cfg, indent=2))
    return cfg


def _check_reload(folder: Path, model: nn.Module) -> None:
    """The folder rebuilds the same weights through timm (what a user of the hub gets)."""
    again = timm.create_model(f"local-dir:{folder}", pretrained=True)
    own, new = model.state_dict(), again.state_dict()
    bad = sorted(set(own) ^ set(new)) or [k for k in own if not torch.equal(own[k].cpu(), new[k].cpu())]
    if bad:
        raise RuntimeError(f"the exported folder does not rebuild the model through timm: {bad[:8]}")


def write_hub_folder(
    model: nn.Module,
    out: Path,
    pre: Preprocessing,
    model_args: Dict[str, Any],
    card: str,
    overwrite: bool = False,
) -> Path:
    """Write ``model`` into ``out`` in the hub layout (files written to a temporary folder first,
    then moved, so a failure leaves ``out`` as it was); returns ``out``."""
    out = Path(out).expanduser()
    check_out(out, overwrite)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.name}.") as tmp:
        staging = Path(tmp) / "model"
        save_for_hf(model.cpu().eval(), str(staging), model_args=model_args, safe_serialization=True)
        _fix_config(staging / "config.json", pre, int(getattr(model, "num_classes", 0) or 0))
        (staging / "README.md").write_text(card)
        _check_reload(staging, model)
        if out.exists():
            shutil.rmtree(out)
        shutil.move(str(staging), str(out))
    return out


__all__ = ["Preprocessing", "check_out", "write_hub_folder"]
