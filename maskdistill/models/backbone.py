"""A maskdistill run's encoder as a plain timm model: every checkpoint exports the student (or the
classifier) as ``backbone.safetensors`` with the ``timm.create_model`` arguments that rebuild it."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Tuple

import timm
from safetensors.torch import load_file
from torch import nn

from maskdistill.models.loading import load_weights
from maskdistill.runs.checkpoint import find_checkpoint, read_meta


def load_backbone(path: str | Path) -> Tuple[nn.Module, Dict[str, Any]]:
    """Rebuild the encoder of a maskdistill run/checkpoint as a plain timm model (eval mode)."""
    ck = find_checkpoint(path)
    info = read_meta(ck).get("backbone")
    if not info:
        raise ValueError(f"checkpoint {ck} has no exported backbone.")
    model = timm.create_model(info["arch"], pretrained=False, **info.get("kwargs", {}))
    load_weights(model, load_file(str(ck / "backbone.safetensors")), str(ck))
    return model.eval(), info


__all__ = ["load_backbone"]
