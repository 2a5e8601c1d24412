"""The student S of the paper's Eq. 1: a timm ViT or BEiT built with ``timm.create_model`` and
wrapped -- not forked -- so that masked patch embeddings are replaced by a learned mask token
*inside* the encoder (BEiT / EVA / dBOT style), before position embeddings are added.

The wrapped timm model stays a plain timm model: ``student.model.state_dict()`` loads into
``timm.create_model(arch, **kwargs)`` for fine-tuning and analysis.
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Tuple

import timm
import torch
from timm.models.beit import Beit
from timm.models.vision_transformer import VisionTransformer
from torch import nn

from maskdistill.config import StudentConfig
from maskdistill.models.loading import check_timm_name


def student_kwargs(cfg: StudentConfig, img_size: int) -> Dict[str, Any]:
    """The ``timm.create_model`` keyword arguments for the configured student."""
    # timm.create_model drops None-valued kwargs, so None would leave BEiT's default layer scale (0.1)
    # in place; 0.0 means "no layer scale" to both timm families.
    kw: Dict[str, Any] = dict(
        img_size=img_size,
        num_classes=0,
        drop_path_rate=cfg.drop_path,
        init_values=cfg.layer_scale if cfg.layer_scale is not None else 0.0,
    )
    if cfg.arch.startswith("beit"):
        kw.update(
            use_abs_pos_emb=cfg.abs_pos_emb,
            use_rel_pos_bias=cfg.rel_pos_bias == "per_block",
            use_shared_rel_pos_bias=cfg.rel_pos_bias == "shared",
        )
    else:
        if cfg.rel_pos_bias != "none":
            raise ValueError(
                f"student.rel_pos_bias={cfg.rel_pos_bias!r} needs a BEiT-family student; "
                f"{cfg.arch} has none. Use a beit_* arch or set student.rel_pos_bias=none."
            )
        if not cfg.abs_pos_emb:
            raise ValueError(
                f"a {cfg.arch} student without absolute position embedding would have no "
                f"position information; set student.abs_pos_emb=true or use a beit_* arch."
            )
    kw.update(cfg.kwargs)
    return kw


class MaskedStudent(nn.Module):
    """timm encoder + mask token. ``forward(x, mask)`` -> tokens (B, p + N, C) after the final norm."""

    def __init__(self, model: nn.Module, arch: str = "", create_kwargs: Optional[Dict[str, Any]] = None):
        super().__init__()
        if not isinstance(model, (VisionTransformer, Beit)):
            raise TypeError(f"students must be timm VisionTransformer or Beit models, got {type(model).__name__}.")
        self.model = model
        self.arch = arch
        self.create_kwargs = dict(create_kwargs or {})
        self.embed_dim: int = model.embed_dim
        self.num_prefix: int = int(model.num_prefix_tokens)
        self.grid: Tuple[int, int] = tuple(model.patch_embed.grid_size)
        self.patch_size: int = int(model.patch_embed.patch_size[0])
        self.mask_token = nn.Parameter(torch.zeros(1, 1, self.embed_dim))
        nn.init.trunc_normal_(self.mask_token, std=0.02)

    def embed(self, x: torch.Tensor, mask: Optional[torch.Tensor]) -> torch.Tensor:
        m = self.model
        x = m.patch_embed(x)  # (B, N, C)
        if mask is not None:
            w = mask.flatten(1).unsqueeze(-1).to(x.dtype)  # (B, N, 1), 1 = masked
            x = x * (1 - w) + self.mask_token.to(x.dtype) * w
        if isinstance(m, Beit):
            x = torch.cat((m.cls_token.expand(x.shape[0], -1, -1), x), dim=1)
            if m.pos_embed is not None:
                x = x + m.pos_embed
            return m.pos_drop(x)
        x = m._pos_embed(x)
        x = m.patch_drop(x)
        return m.norm_pre(x)

    def forward(self, x: torch.Tensor, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        m = self.model
        x = self.embed(x, mask)
        if isinstance(m, Beit):
            rel = m.rel_pos_bias() if m.rel_pos_bias is not None else None
            for blk in m.blocks:
                x = blk(x, shared_rel_pos_bias=rel)
        else:
            x = m.blocks(x)
        # timm's BEiT with global_pool="avg" (its default) keeps its final norm as ``fc_norm`` and
        # sets ``norm`` to Identity; the distilled tokens still pass the final norm (BEiT v2, FD, EVA).
        norm = m.fc_norm if isinstance(m, Beit) and isinstance(m.norm, nn.Identity) else m.norm
        return norm(x)


def build_student(cfg: StudentConfig, img_size: int) -> MaskedStudent:
    check_timm_name(cfg.arch)
    kw = student_kwargs(cfg, img_size)
    patch = kw.get("patch_size")
    model = timm.create_model(cfg.arch, pretrained=False, **kw)
    patch = int(model.patch_embed.patch_size[0]) if patch is None else int(patch)
    if img_size % patch:
        raise ValueError(
            f"image size {img_size} is not divisible by the student's patch size {patch}; "
            f"use data.img_size={img_size - img_size % patch} or {img_size - img_size % patch + patch}."
        )
    return MaskedStudent(model, cfg.arch, kw)
