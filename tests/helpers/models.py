"""Tiny timm Vision Transformers for the tests: one configurable, seeded builder, so that every test
file gets the same weights for the same settings, and the few shapes the tests share as presets.

- ``"hessian"`` (the default): the curvature tests' 691-parameter model -- 8 px one-channel images,
  4 px patches (a 2 x 2 grid), width 8, one block of two heads, MLP ratio 1, three classes;
- ``"grid14"``: a 14 x 14 patch grid at 56 px (4 px patches), width 16, two blocks of two heads, ten
  classes -- the attention tests' model;
- ``"rgb32"``: 32 px RGB images, 8 px patches (a 4 x 4 grid), width 16, two blocks of two heads;
- ``"backbone32"``: ViT-S/16's config shrunk to 32 px, 8 px patches, width 32, three blocks of two
  heads, no head (``num_classes=0``), built through ``timm.create_model``.
"""

from __future__ import annotations

from typing import Any, Dict, Optional

import timm
import torch
from timm.models.vision_transformer import VisionTransformer

RGB = dict(in_chans=3, mlp_ratio=4.0)  # timm's defaults
PRESETS: Dict[str, Dict[str, Any]] = {
    "hessian": dict(img_size=8, patch_size=4, in_chans=1, embed_dim=8, depth=1, mlp_ratio=1.0, num_classes=3),
    "grid14": dict(img_size=56, patch_size=4, embed_dim=16, depth=2, num_classes=10, **RGB),
    "rgb32": dict(img_size=32, patch_size=8, embed_dim=16, depth=2, num_classes=10, **RGB),
    "backbone32": dict(
        arch="vit_small_patch16_224", img_size=32, patch_size=8, embed_dim=32, depth=3, num_classes=0, **RGB
    ),
}
ATTENTION_INITS = (None, "uniform", "peaked")


def _set_attention(model: VisionTransformer, attention: str) -> None:
    """``"uniform"``: zero query and key weights and biases (every query attends uniformly);
    ``"peaked"``: query and key weights redrawn from N(0, 1) (peaked, image-dependent attention)."""
    with torch.no_grad():
        for blk in model.blocks:
            qk = 2 * blk.attn.qkv.in_features  # the query and key rows of the fused qkv projection
            w, b = blk.attn.qkv.weight, blk.attn.qkv.bias
            if attention == "uniform":
                w[:qk].zero_()
                b[:qk].zero_()
            else:
                w[:qk].normal_(0, 1.0)


def tiny_vit(
    preset: str = "hessian",
    *,
    seed: int = 0,
    dtype: Optional[torch.dtype] = None,
    attention: Optional[str] = None,
    arch: Optional[str] = None,
    eval_mode: bool = False,
    **kwargs: Any,
) -> VisionTransformer:
    """A ViT of ``preset`` (``kwargs`` override or extend its constructor arguments, e.g.
    ``depth=3`` or ``class_token=False``; two heads unless ``num_heads`` says otherwise), built right
    after ``torch.manual_seed(seed)``.

    ``arch``: build through ``timm.create_model(arch, ...)`` (the model then carries that
    architecture's ``pretrained_cfg``; the weights equal the direct build's); ``attention``: None
    keeps timm's init, else ``"uniform"`` or ``"peaked"``; ``dtype``: cast the parameters;
    ``eval_mode``: return it in eval mode."""
    if attention not in ATTENTION_INITS:
        raise ValueError(f"attention={attention!r}; choose one of {ATTENTION_INITS}.")
    args = dict(PRESETS[preset], num_heads=2)
    args.update(kwargs)
    arch = arch or args.pop("arch", None)
    args.pop("arch", None)
    torch.manual_seed(seed)
    model = timm.create_model(arch, **args) if arch else VisionTransformer(**args)
    if attention is not None:
        _set_attention(model, attention)
    if dtype is not None:
        model = model.to(dtype)
    return model.eval() if eval_mode else model
