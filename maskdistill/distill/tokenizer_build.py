"""Building BEiT v2's VQ-KD tokenizer (paper Sec. 5 and App. B, Fig. 9; Table 1 "VQ-KD" column):
from a :class:`~maskdistill.distill.tokenizer.VQKDConfig` (the timm ViT encoder, the 1x1-patch
transformer decoder over the code map, the EMA codebook) with its frozen teacher for training, or
from the run directory of ``maskdistill tokenizer train`` without the teacher, for code extraction.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Optional, Tuple

import timm
from omegaconf import OmegaConf
from timm.models.vision_transformer import VisionTransformer
from torch import nn

from maskdistill.config import TeacherConfig
from maskdistill.distill.codebook import CodebookOptions, EMACodebook
from maskdistill.distill.tokenizer import VQKD, VQKDConfig
from maskdistill.models.loading import check_timm_name
from maskdistill.models.teacher import build_teacher


def build_encoder(cfg: VQKDConfig, img_size: int) -> VisionTransformer:
    check_timm_name(cfg.arch)
    encoder = timm.create_model(cfg.arch, pretrained=False, img_size=img_size, num_classes=0, **cfg.kwargs)
    patch = int(encoder.patch_embed.patch_size[0])
    if img_size % patch:
        raise ValueError(
            f"image size {img_size} is not divisible by the tokenizer's patch size {patch}; "
            f"use data.img_size={img_size - img_size % patch + patch}."
        )
    return encoder


def build_vqkd(
    cfg: VQKDConfig,
    img_size: int,
    target_dim: int,
    teacher: Optional[nn.Module] = None,
    encoder: Optional[VisionTransformer] = None,
) -> VQKD:
    encoder = encoder if encoder is not None else build_encoder(cfg, img_size)
    width = encoder.embed_dim
    heads = cfg.decoder_heads or encoder.blocks[0].attn.num_heads
    if width % heads:
        raise ValueError(
            f"tokenizer.decoder_heads={heads} does not divide the width {width}; pick a divisor "
            f"of {width} (0 = the encoder's heads)."
        )
    grid = tuple(encoder.patch_embed.grid_size)
    decoder = VisionTransformer(
        img_size=grid,
        patch_size=1,
        in_chans=cfg.code_dim,
        embed_dim=width,
        depth=cfg.decoder_depth,
        num_heads=heads,
        num_classes=0,
        class_token=False,
        global_pool="",
    )
    codebook = EMACodebook(
        cfg.num_codes, cfg.code_dim, CodebookOptions(cfg.decay, cfg.commitment, cfg.kmeans_iters, cfg.dead_threshold)
    )
    return VQKD(encoder, codebook, decoder, target_dim, cfg.mean, cfg.std, teacher, cfg.whitening)


def build_tokenizer(
    cfg: VQKDConfig, teacher_cfg: TeacherConfig, img_size: int, pretrained_teacher: bool = True
) -> VQKD:
    """The tokenizer with its (frozen) teacher, ready for training."""
    if teacher_cfg.prefix_tokens:
        raise ValueError("the tokenizer reconstructs patch tokens only; set teacher.prefix_tokens=false.")
    encoder = build_encoder(cfg, img_size)
    patch = int(encoder.patch_embed.patch_size[0])
    teacher = build_teacher(teacher_cfg, img_size, patch, 3, cfg.mean, cfg.std, pretrained=pretrained_teacher)
    return build_vqkd(cfg, img_size, teacher.dim, teacher, encoder)


def vqkd_config(d: Dict[str, Any]) -> VQKDConfig:
    return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(VQKDConfig), OmegaConf.create(d)))


def tokenizer_info(path: str | Path) -> Tuple[Path, Dict[str, Any]]:
    """(checkpoint directory, meta) of a tokenizer run or checkpoint; refuses other checkpoints."""
    from maskdistill.runs.checkpoint import find_checkpoint, read_meta

    ck = find_checkpoint(path)
    meta = read_meta(ck)
    if meta.get("kind") != "tokenizer" or "tokenizer" not in meta:
        raise ValueError(
            f"{ck} is a {meta.get('kind', 'unknown')!r} checkpoint, not a tokenizer; train one "
            f"with `maskdistill tokenizer train` and pass its run directory."
        )
    return ck, meta


def load_tokenizer(path: str | Path) -> Tuple[VQKD, Dict[str, Any]]:
    """A trained tokenizer (run or checkpoint directory of ``maskdistill tokenizer train``),
    without its teacher, in eval mode; and its ``meta["tokenizer"]`` (teacher, codes, grid, ...)."""
    from maskdistill.runs.checkpoint import load_checkpoint

    ck, meta = tokenizer_info(path)
    info = meta["tokenizer"]
    model = build_vqkd(vqkd_config(meta["config"]["tokenizer"]), int(info["img_size"]), int(info["target_dim"]))
    load_checkpoint(ck, model)
    return model.eval(), dict(info, checkpoint=str(ck))


__all__ = ["build_encoder", "build_vqkd", "build_tokenizer", "vqkd_config", "tokenizer_info", "load_tokenizer"]
