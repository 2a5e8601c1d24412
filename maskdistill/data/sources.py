"""The images behind a training job: the built-in shapes x textures set or an image folder."""

from __future__ import annotations

from typing import Any

from torch.utils.data import Dataset

from maskdistill.data.folder import ImageFolder
from maskdistill.data.synthetic import ShapesTextures


def base_dataset(data_path: str, cfg_data: Any, split: str = "train") -> Dataset:
    """The images behind a job: the built-in shapes x textures set or an image folder."""
    if data_path == "builtin":
        return ShapesTextures(
            num_images=cfg_data.builtin_images,
            image_size=cfg_data.builtin_image_size,
            seed=cfg_data.builtin_seed,
            split=split,
            label=cfg_data.builtin_label,
        )
    return ImageFolder(data_path)


__all__ = ["base_dataset"]
