"""Model specs shared by every command that takes "any model": ``timm:<name>``,
``timm:<name>@<weights file>`` or a maskdistill run / checkpoint directory. Returns the model in eval
mode with what a probe or an evaluation needs to feed it: its own normalisation, input size, crop and
interpolation (timm's ``resolve_data_config``), patch grid and prefix-token count."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, Optional, Tuple

from timm.data import resolve_data_config
from torch import nn

from maskdistill.models.loading import create_timm


@dataclass
class ModelInfo:
    spec: str
    arch: str
    mean: Tuple[float, ...]
    std: Tuple[float, ...]
    img_size: int
    crop_pct: float = 1.0
    interpolation: str = "bicubic"
    patch_size: int = 0  # 0 for models without a patch grid (CNNs)
    num_prefix: int = 0  # CLS + registers (+ distillation token)
    num_classes: int = 0
    classes: List[str] = field(default_factory=list)  # label names of maskdistill classifiers
    kwargs: Dict[str, Any] = field(default_factory=dict)  # timm.create_model kwargs to rebuild it

    @property
    def grid(self) -> Tuple[int, int]:
        if not self.patch_size:
            raise ValueError(f"{self.spec} has no patch grid (not a ViT).")
        return (self.img_size // self.patch_size,) * 2

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)


def _patch_and_prefix(model: nn.Module) -> Tuple[int, int]:
    pe = getattr(model, "patch_embed", None)
    patch = int(pe.patch_size[0]) if pe is not None and hasattr(pe, "patch_size") else 0
    return patch, int(getattr(model, "num_prefix_tokens", 0) or 0)


def describe_model(
    model: nn.Module,
    spec: str,
    arch: str,
    overrides: Optional[Dict[str, Any]] = None,
    kwargs: Optional[Dict[str, Any]] = None,
) -> ModelInfo:
    """``ModelInfo`` from the model's own pretrained_cfg (timm's eval transform settings), with
    ``overrides`` (mean/std/img_size/classes from a maskdistill checkpoint) taking precedence."""
    dc = resolve_data_config({}, model=model)
    o = dict(overrides or {})
    patch, prefix = _patch_and_prefix(model)
    img = int(o.get("img_size") or dc["input_size"][-1])
    return ModelInfo(
        spec=spec,
        arch=arch,
        mean=tuple(o.get("mean") or dc["mean"]),
        std=tuple(o.get("std") or dc["std"]),
        img_size=img,
        crop_pct=float(o.get("crop_pct") or dc.get("crop_pct") or 1.0),
        interpolation=str(dc.get("interpolation") or "bicubic"),
        patch_size=patch,
        num_prefix=prefix,
        num_classes=int(getattr(model, "num_classes", 0) or 0),
        classes=list(o.get("classes") or []),
        kwargs=dict(kwargs or {}),
    )


def load_model(spec: str, pretrained: bool = True, **create_kwargs: Any) -> Tuple[nn.Module, ModelInfo]:
    """Build the model named by ``spec`` (eval mode) and describe how to feed it.

    ``create_kwargs`` go to ``timm.create_model`` for ``timm:`` specs (e.g. ``num_classes``,
    ``img_size``); checkpoints are rebuilt exactly as they were saved."""
    if spec.startswith("timm:"):
        name, _, weights = spec[len("timm:") :].partition("@")
        model = create_timm(name, weights=weights or None, pretrained=pretrained and not weights, **create_kwargs)
        return model.eval(), describe_model(model, spec, name, kwargs=create_kwargs)
    if spec.startswith("open_clip:"):
        raise ValueError(
            f"{spec}: OpenCLIP towers are teachers only here; for analysis use timm's CLIP "
            f"towers, e.g. timm:vit_base_patch16_clip_224.openai."
        )
    from maskdistill.models.backbone import load_backbone

    model, info = load_backbone(spec)
    return model.eval(), describe_model(model, spec, info["arch"], overrides=info, kwargs=info.get("kwargs"))


__all__ = ["ModelInfo", "describe_model", "load_model"]
