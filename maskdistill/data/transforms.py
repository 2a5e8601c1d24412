"""Input transforms built from torchvision. Pre-training augmentation of the paper's Table 1
("BEiT v2/Base": RandomResizedCrop min scale 0.2, colour jitter 0.4, flip 0.5). Transforms return
uint8 tensors; normalisation happens on the device, per model (teacher and student each use their
own mean/std on the same crop)."""

from __future__ import annotations

from typing import Callable

import torch
from torchvision import transforms as T
from torchvision.transforms import InterpolationMode


def pretrain_transform(
    img_size: int, min_scale: float = 0.2, color_jitter: float = 0.4, hflip: float = 0.5
) -> Callable:
    ops = [T.RandomResizedCrop(img_size, scale=(min_scale, 1.0), interpolation=InterpolationMode.BICUBIC)]
    if color_jitter > 0:
        ops.append(T.ColorJitter(color_jitter, color_jitter, color_jitter))
    if hflip > 0:
        ops.append(T.RandomHorizontalFlip(hflip))
    ops.append(T.PILToTensor())
    return T.Compose(ops)


def eval_transform(img_size: int, crop_pct: float = 1.0) -> Callable:
    """Resize the short side to img_size / crop_pct, centre-crop img_size (uint8 output)."""
    return T.Compose(
        [
            T.Resize(int(round(img_size / crop_pct)), interpolation=InterpolationMode.BICUBIC),
            T.CenterCrop(img_size),
            T.PILToTensor(),
        ]
    )


def to_unit(images: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] or float [0, 1] images -> float32 in [0, 1]."""
    return images.float().div_(255) if images.dtype == torch.uint8 else images.float()
