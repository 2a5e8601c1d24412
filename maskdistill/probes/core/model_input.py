"""How a model spec of ``maskdistill analyze`` becomes a model the probes can feed (paper Secs. 3-5
measure models as published): the options after ``?`` in a spec, which go to ``timm.create_model``
(and ``pretrained``), and the image side the model really takes.

Examples: ``timm:vit_small_patch14_dinov2@w.safetensors?img_size=224&num_classes=0``,
``timm:test_vit?pretrained=false``.
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Tuple

from torch import nn

from maskdistill.models.spec import ModelInfo, parse_spec


def split_spec(spec: str) -> Tuple[str, Dict[str, Any]]:
    """``"timm:x@w?img_size=224&num_classes=0"`` -> ("timm:x@w", {"img_size": 224, "num_classes": 0});
    option values are read as Python literals (``true``/``false`` in any case as booleans), else kept
    as strings."""
    parsed = parse_spec(spec)
    return parsed.base, dict(parsed.options)


def input_size(model: nn.Module, info: ModelInfo) -> Tuple[int, Optional[str]]:
    """(side, note): the image side the model really takes. A ViT built with ``img_size=`` keeps the
    pretrained config's size in ``pretrained_cfg`` (e.g. DINOv2's 518) -- feeding that would fail or
    silently change the grid, so a fixed-size patch embedding wins, and the note says so."""
    pe = getattr(model, "patch_embed", None)
    size = getattr(pe, "img_size", None)
    dynamic = bool(getattr(model, "dynamic_img_size", False)) or not bool(getattr(pe, "strict_img_size", True))
    if size is None or dynamic:
        return int(info.img_size), None
    side = int(size[0] if isinstance(size, (tuple, list)) else size)
    if isinstance(size, (tuple, list)) and len(set(size)) != 1:
        raise ValueError(f"{info.spec}: non-square input {tuple(size)} is not supported by the analysis.")
    if side != info.img_size:
        return side, (
            f"pretrained_cfg says {info.img_size}px but the patch embedding takes {side}px; "
            f"images are resized (short side {side}/crop_pct) and centre-cropped to {side}px."
        )
    return side, None


__all__ = ["input_size", "split_spec"]
