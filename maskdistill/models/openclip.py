"""OpenCLIP image towers as teachers (optional extra: ``pip install maskdistill[clip]``).

``open_clip:<arch>/<tag>`` (e.g. ``open_clip:ViT-B-16/laion2b_s34b_b88k``) loads the model with
OpenCLIP, then moves its image tower into timm's CLIP ViT layout with timm's own converter
(``checkpoint_filter_fn`` understands OpenAI/OpenCLIP keys). The teacher is then an ordinary timm
ViT: same block choice, ``ln_post`` (final norm) and projection options as ``timm:`` CLIP teachers,
and the same probes work on it.
"""

from __future__ import annotations

from typing import Any, Optional, Tuple

from timm.models.vision_transformer import VisionTransformer, checkpoint_filter_fn
from torch import nn

from maskdistill.models.loading import load_weights


def _require_open_clip():
    try:
        import open_clip
    except ImportError:
        raise ImportError(
            "open_clip: teachers need OpenCLIP; install it with `pip install maskdistill[clip]` "
            "(or `pip install open_clip_torch`)."
        ) from None
    return open_clip


def openclip_to_timm(model: nn.Module, arch: str, img_size: int) -> Tuple[VisionTransformer, Any]:
    """Build timm's CLIP ViT with the OpenCLIP model's image-tower sizes and load its weights.
    Returns the timm model (projection as ``head``) and OpenCLIP's preprocess config."""
    open_clip = _require_open_clip()
    cfg = open_clip.get_model_config(arch)
    if cfg is None:
        raise ValueError(f"OpenCLIP has no model config {arch!r}; see open_clip.list_models().")
    v = cfg["vision_cfg"]
    if v.get("timm_model_name"):
        raise ValueError(
            f"{arch} wraps the timm model {v['timm_model_name']}; use timm:{v['timm_model_name']} as teacher."
        )
    width, patch = int(v["width"]), int(v["patch_size"])
    quick_gelu = (
        bool(cfg.get("quick_gelu", False))
        or "QuickGELU" in type(model.visual.transformer.resblocks[0].mlp.gelu).__name__
    )
    timm_model = VisionTransformer(
        img_size=img_size,
        patch_size=patch,
        embed_dim=width,
        depth=int(v["layers"]),
        num_heads=width // int(v.get("head_width", 64)),
        mlp_ratio=float(v.get("mlp_ratio", 4.0)),
        pre_norm=True,
        norm_layer=nn.LayerNorm,
        num_classes=int(cfg["embed_dim"]),
        global_pool="token",
        act_layer="quick_gelu" if quick_gelu else "gelu",
    )
    sd = checkpoint_filter_fn(model.state_dict(), timm_model)
    load_weights(timm_model, sd, f"open_clip:{arch}")
    return timm_model, model.visual.preprocess_cfg if hasattr(model.visual, "preprocess_cfg") else {}


def load_openclip_tower(
    arch: str, tag: Optional[str], img_size: int, pretrained: bool = True
) -> Tuple[nn.Module, Tuple, Tuple]:
    """(``<arch>``, ``<tag>``) of ``open_clip:<arch>/<tag>`` -> (timm CLIP ViT in eval mode, mean, std): the
    image tower of an OpenCLIP model with its own input normalisation, ready to wrap as a teacher.
    ``tag`` is an OpenCLIP pretrained tag or a local checkpoint file; without one (or with
    ``pretrained=False``) the tower has OpenCLIP's random initial weights."""
    open_clip = _require_open_clip()
    spec = f"open_clip:{arch}" + (f"/{tag}" if tag else "")
    try:
        model = open_clip.create_model(arch, pretrained=tag if pretrained else None)
    except Exception as e:
        raise RuntimeError(
            f"could not build {spec} ({type(e).__name__}: {e}). Without network "
            f"access, pass a local checkpoint file as the tag: open_clip:{arch}//path/to/file.bin"
        ) from None
    timm_model, pre = openclip_to_timm(model, arch, img_size)
    mean = tuple(pre.get("mean", (0.48145466, 0.4578275, 0.40821073)))
    std = tuple(pre.get("std", (0.26862954, 0.26130258, 0.27577711)))
    return timm_model.eval(), mean, std


__all__ = ["openclip_to_timm", "load_openclip_tower"]
