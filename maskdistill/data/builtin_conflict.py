"""Native cue-conflict images on the built-in data (paper Sec. 5, Fig. 8a, made measurable offline):
the shape of one class with the texture of another, labelled with both, so that the shape bias of a
classifier trained on the built-in data needs no ImageNet mapping.

The label set has ``num_classes`` classes; class k is the pair (``SHAPES[k]``, ``TEXTURES[k]``) and is
named by its shape, ``SHAPES[k]`` (a classifier trained on the built-in shape labels has exactly these
class names; a head trained on texture labels names textures only, so it cannot make a shape decision
and is refused, not read through an alias). Item i
draws an ordered pair (a, b), a != b -- every pair once per block of K(K-1) items, in a seeded order --
and renders class a's shape filled with class b's texture on item i's geometry, colours and noise
(``ShapesTextures.cue_conflict``, split ``"test"`` by default: images never seen in training). Its
``category`` is a (the shape, as in Geirhos et al.'s files) and its image id follows their naming
``<shape><i>-<texture><i>.png`` with class names, so :func:`maskdistill.probes.decisions.shape_bias.shape_bias`
reads the texture class from it.
"""

from __future__ import annotations

from typing import Any, Callable, List, Optional

import numpy as np
from torch.utils.data import Dataset

from maskdistill.data.synthetic import SHAPES, TEXTURES, ShapesTextures, seeded_blocks

_PAIR_KEY = 20  # seeds the pair order apart from the streams synthetic.py uses (keys 0-2 and 10-12)


class BuiltinCueConflict(Dataset):
    """``ds[i] -> (PIL image, shape class a)``; ``shape_labels``/``texture_labels`` hold a and b."""

    dataset = "builtin-cue-conflict"

    def __init__(
        self, num_images: int = 450, num_classes: int = 10, transform: Optional[Callable] = None, **images: Any
    ) -> None:
        """``images``: how :class:`ShapesTextures` draws the pictures (``image_size`` 64, ``seed`` 0,
        ``split`` "test" unless given)."""
        if not 2 <= num_classes <= min(len(SHAPES), len(TEXTURES)):
            raise ValueError(f"num_classes={num_classes}: use 2..{min(len(SHAPES), len(TEXTURES))}.")
        images = {"image_size": 64, "seed": 0, "split": "test", **images}
        self.base = ShapesTextures(num_images, num_shapes=num_classes, num_textures=num_classes, **images)
        seed = images["seed"]
        k = num_classes
        pairs = np.array([(a, b) for a in range(k) for b in range(k) if a != b], dtype=np.int64)  # (K(K-1), 2)
        order = seeded_blocks(num_images, len(pairs), seed, self.base.split_id + _PAIR_KEY)
        self.shape_labels: np.ndarray = pairs[order, 0]
        self.texture_labels: np.ndarray = pairs[order, 1]
        self.classes: List[str] = list(SHAPES[:k])
        self.aliases: List[List[str]] = []  # no texture names: a texture head's outputs are no shape decisions
        self.class_to_idx = {c: i for i, c in enumerate(self.classes)}
        self.transform = transform

    def __len__(self) -> int:
        return len(self.shape_labels)

    def load(self, i: int):
        return self.base.cue_conflict(int(self.shape_labels[i]), int(self.texture_labels[i]), int(i))

    def __getitem__(self, i: int) -> tuple[Any, int]:
        img = self.load(i)
        return (self.transform(img) if self.transform else img), int(self.shape_labels[i])

    @property
    def categories(self) -> List[str]:
        return [self.classes[a] for a in self.shape_labels]

    @property
    def image_ids(self) -> List[str]:
        return [
            f"{self.classes[a]}{i}-{self.classes[b]}{i}.png"
            for i, (a, b) in enumerate(zip(self.shape_labels, self.texture_labels))
        ]


__all__ = ["BuiltinCueConflict"]
