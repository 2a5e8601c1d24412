"""Shared pieces of the fine-tuning tests: a tiny timm ViT saved as safetensors (usable as
``timm:vit_small_patch16_224@<file>``) and the tiny fine-tuning config on 32-px built-in images."""

from __future__ import annotations

from pathlib import Path
from typing import List

import timm
import torch
from safetensors.torch import save_file

from maskdistill.config import load_config
from maskdistill.train.finetune_config import FinetuneConfig

VIT_KW = dict(patch_size=8, embed_dim=32, depth=3, num_heads=2)
# 96 built-in 32-px images, batch 16 -> 6 steps per epoch; 64 validation images.
TINY = [
    "data.img_size=32",
    "data.builtin_image_size=32",
    "data.builtin_images=96",
    "data.builtin_val_images=64",
    "train.batch_size=16",
    "train.epochs=1",
    "train.device=cpu",
    "train.log_every=1",
    "optim.warmup_epochs=0.2",
    "data.builtin_label=texture",
    "model.global_pool=token",
]


def save_tiny_vit(path: Path, seed: int = 0) -> Path:
    torch.manual_seed(seed)
    m = timm.create_model("vit_small_patch16_224", pretrained=False, num_classes=0, img_size=32, **VIT_KW)
    save_file({k: v.contiguous() for k, v in m.state_dict().items()}, str(path))
    return path


def vit_spec(path: Path) -> List[str]:
    return [f"model.spec=timm:vit_small_patch16_224@{path}"] + [f"model.kwargs.{k}={v}" for k, v in VIT_KW.items()]


def ft_cfg(spec: str, *extra: str) -> FinetuneConfig:
    return load_config("demo", [f"model.spec={spec}", *TINY, *extra], schema=FinetuneConfig, kind="finetune")
