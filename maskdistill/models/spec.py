"""Model specs shared by every command that takes "any model" (the teacher T of Eq. 1, the models of
the analyses of Secs. 3-4, the start of a fine-tune): one parser for the text of a spec and the
loader that turns a spec into a model with what a probe or an evaluation needs to feed it.

A spec is one of

- ``timm:<name>[@<weights file>]``: a timm architecture, hub weights or a local weights file;
- ``hf-hub:<org>/<name>[@<revision>]`` or ``local-dir:<folder>``: timm's own names of a model in the
  Hugging Face hub layout (``config.json`` + ``model.safetensors``, what ``maskdistill export``
  writes); they are timm specs whose name ``timm.create_model`` resolves;
- ``open_clip:<arch>[/<tag or weights file>]``: an OpenCLIP image tower (a teacher only);
- ``pixels``: the per-patch pixels of classical MIM (Fig. 1c; a teacher only);
- a maskdistill run or checkpoint directory.

Any of them may end in ``?key=value&key=value`` options (``timm.create_model`` arguments and
``pretrained``), e.g. ``timm:vit_small_patch14_dinov2@w.safetensors?img_size=224&num_classes=0``;
values are Python literals (``224``, ``0.5``, ``(1, 2)``), ``true``/``false``, or else strings.

:func:`load_model` returns the model in eval mode with its own normalisation, input size, crop and
interpolation (timm's ``resolve_data_config``), patch grid and prefix-token count."""

from __future__ import annotations

import ast
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Literal, Optional, Tuple

from timm.data import resolve_data_config
from torch import nn

from maskdistill.config.spec_forms import SPEC_FORMS, is_hub_name
from maskdistill.errors import UsageError
from maskdistill.models.loading import create_timm

SpecKind = Literal["timm", "open_clip", "pixels", "run"]
_SCHEME = re.compile(r"^([A-Za-z][\w.-]*):")


@dataclass(frozen=True)
class ModelSpec:
    """A parsed model spec. ``name``: the timm or OpenCLIP architecture, ``pixels``, or the run path;
    ``weights``: the local weights file (timm) or the pretrained tag / weights file (OpenCLIP);
    ``options``: what followed ``?``; ``base``: the spec as given, without its options."""

    kind: SpecKind
    name: str
    weights: Optional[str] = None
    options: Dict[str, Any] = field(default_factory=dict)
    base: str = ""

    def without_options(self, where: str) -> "ModelSpec":
        """Refuse ``?options`` where a spec cannot take them (``where``: who reads the spec)."""
        if self.options:
            raise UsageError(
                f"{where} takes no ?options in its model spec ({self.base}?...); drop them and set the "
                f"command's own config keys instead."
            )
        return self


def _option_value(value: str) -> Any:
    low = value.lower()
    if low in ("true", "false"):
        return low == "true"
    try:
        return ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return value


def parse_options(spec: str, query: str) -> Dict[str, Any]:
    """``"img_size=224&pretrained=false"`` -> {"img_size": 224, "pretrained": False}."""
    opts: Dict[str, Any] = {}
    for part in filter(None, query.split("&")):
        key, eq, value = part.partition("=")
        if not eq or not key.isidentifier():
            raise UsageError(f"model spec {spec!r}: option {part!r} is not key=value (e.g. ?img_size=224).")
        opts[key] = _option_value(value)
    return opts


def _parse_timm(spec: str, body: str) -> Tuple[str, Optional[str]]:
    name, at, weights = body.partition("@")
    if not name:
        raise UsageError(f"model spec {spec!r} names no timm model; write e.g. timm:vit_base_patch16_224.")
    if at and not weights:
        raise UsageError(f"model spec {spec!r} has '@' but no weights file; drop the '@' or add a path after it.")
    return name, weights or None


def _parse_open_clip(spec: str, body: str) -> Tuple[str, Optional[str]]:
    arch, _, tag = body.partition("/")
    if not arch:
        raise UsageError(
            f"model spec {spec!r} names no OpenCLIP model; write e.g. open_clip:ViT-B-16/laion2b_s34b_b88k."
        )
    return arch, tag or None


def parse_spec(spec: str) -> ModelSpec:
    """The one parser of model specs (see the module docstring for the forms). Raises
    :class:`~maskdistill.errors.UsageError` naming the fix for malformed text; whether a run
    directory or a weights file exists is checked by whoever loads it."""
    text = str(spec).strip()
    base, q, query = text.partition("?")
    opts = parse_options(text, query) if q else {}
    if not base:
        raise UsageError(f"empty model spec {spec!r}; give {SPEC_FORMS}.")
    if is_hub_name(base):  # the whole name goes to timm ("@" is a hub revision there, not a file)
        if not base.partition(":")[2]:
            raise UsageError(f"model spec {spec!r} names no model; write hf-hub:<org>/<name> or local-dir:<folder>.")
        return ModelSpec("timm", base, None, opts, base)
    if base.startswith("timm:"):
        name, weights = _parse_timm(text, base[len("timm:") :])
        return ModelSpec("timm", name, weights, opts, base)
    if base.startswith("open_clip:"):
        arch, tag = _parse_open_clip(text, base[len("open_clip:") :])
        return ModelSpec("open_clip", arch, tag, opts, base)
    if base == "pixels":
        return ModelSpec("pixels", "pixels", None, opts, base)
    scheme = _SCHEME.match(base)
    if scheme and not Path(base).expanduser().exists():
        raise UsageError(f"model spec {spec!r}: unknown kind {scheme.group(1) + ':'!r}; give {SPEC_FORMS}.")
    return ModelSpec("run", base, None, opts, base)


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
    ``img_size``), and so do the spec's own ``?options`` (which win; ``?pretrained=false`` overrides
    ``pretrained``); checkpoints are rebuilt exactly as they were saved."""
    parsed = parse_spec(spec)
    if parsed.kind == "timm":
        opts = dict(parsed.options)
        pretrained = bool(opts.pop("pretrained", pretrained))
        kwargs = {**create_kwargs, **opts}
        w = parsed.weights
        model = create_timm(parsed.name, weights=w, pretrained=pretrained and not w, **kwargs)
        if is_hub_name(parsed.name):  # the real architecture, and the label names the folder carries
            cfg = model.pretrained_cfg or {}
            arch, over = str(cfg.get("architecture") or parsed.name), {"classes": cfg.get("label_names")}
            return model.eval(), describe_model(model, spec, arch, overrides=over, kwargs=kwargs)
        return model.eval(), describe_model(model, spec, parsed.name, kwargs=kwargs)
    if parsed.kind == "open_clip":
        raise UsageError(
            f"{spec}: OpenCLIP towers are teachers only here; for analysis use timm's CLIP "
            f"towers, e.g. timm:vit_base_patch16_clip_224.openai."
        )
    if parsed.kind == "pixels":
        raise UsageError(
            f"{spec}: pixels is a teacher only (per-patch pixel targets); give a model: timm:<name> or a run directory."
        )
    from maskdistill.models.backbone import load_backbone

    model, info = load_backbone(parsed.name)
    return model.eval(), describe_model(model, spec, info["arch"], overrides=info, kwargs=info.get("kwargs"))


__all__ = [
    "SPEC_FORMS",
    "ModelSpec",
    "SpecKind",
    "parse_spec",
    "parse_options",
    "ModelInfo",
    "describe_model",
    "load_model",
]
