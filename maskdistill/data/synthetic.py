"""Built-in data: procedurally generated images with an independent *shape* and *texture* class.

Why it exists: the paper's shape-vs-texture analysis (Sec. 5, App. C) asks whether a model decides
by an object's outline or by its surface pattern, which needs images where the two cues disagree.
Here every image is a filled silhouette (one of ``SHAPES``) painted with a pattern (one of
``TEXTURES``) on a background that carries neither cue, and the two classes are drawn independently,
so cue-conflict images exist by construction. It also is the data of the demo and of unit tests:
no download, ~0.4 ms per 64 px image, and learnable by a tiny ViT (patch 8 on 64 px) in CPU minutes.

Determinism: item ``i`` of split ``s`` is rendered from ``np.random.default_rng([seed, s, i])``
alone, so pixels are bitwise identical whatever the read order or number of DataLoader workers.
Rendered items are kept in a per-process cache (up to ``CACHE_BYTES``, 256 MB: 20,000 images of
64 px): the demo and the tests read the same few thousand images in every epoch of several runs.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Callable

import numpy as np
import torch.utils.data
from PIL import Image

# Filled silhouettes whose outlines differ at 64 px even after +-10 deg rotation, and differ
# coarsely: at the 8 px patch level of a small ViT (no hexagon: too close to a circle; no star or
# heart: their spikes and cusp are finer than a patch and a ViT learnt them slowly; square vs
# diamond stay 35 deg and an aspect apart).
SHAPES: tuple[str, ...] = (
    "circle",
    "square",
    "triangle",
    "cross",
    "tee",
    "ring",
    "diamond",
    "crescent",
    "cup",
    "hourglass",
)
TEXTURES: tuple[str, ...] = (
    "horizontal_stripes",
    "vertical_stripes",
    "diagonal_stripes",
    "checkerboard",
    "dots",
    "grid",
    "concentric_rings",
    "waves",
    "speckle",
    "zigzag",
)
SPLITS: dict[str, int] = {"train": 0, "val": 1, "test": 2}
CACHE_BYTES = 256 * 2**20
_CACHE: dict[tuple[int, ...], np.ndarray] = {}  # (seed, split, index, size, shape, texture) -> pixels
_CACHE_USED = [0]
# Label permutations are seeded with [seed, split_id + _LABEL_KEY, block]. All keys have exactly
# three words: numpy's SeedSequence maps [a, b] and [a, b, 0] to the same stream, so mixing key
# lengths could make a label stream equal to an image stream.
_LABEL_KEY = 10
_MAX_ROT = np.deg2rad(10.0)  # small, so square/diamond (45 deg apart) stay distinct classes


@lru_cache(maxsize=8)
def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates in [-1, 1] (x to the right, y down), cached per image size."""
    c = ((np.arange(size, dtype=np.float32) + 0.5) / size) * 2.0 - 1.0
    return np.meshgrid(c, c)  # (X, Y), each (size, size)


def _shape_mask(shape: int, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Inside test in shape coordinates (shape fits the unit disc, v points down)."""
    au, av = np.abs(u), np.abs(v)
    name = SHAPES[shape]
    if name == "circle":
        return u * u + v * v <= 0.85**2
    if name == "square":
        return np.maximum(au, av) <= 0.7
    if name == "triangle":  # equilateral, apex up; v shifted so the box is centred
        w = v - 0.25
        return (w <= 0.5) & (0.866 * au - 0.5 * w <= 0.5)
    if name == "cross":
        return ((au <= 0.28) & (av <= 0.9)) | ((av <= 0.28) & (au <= 0.9))
    if name == "tee":  # a T: full-width bar on top of a stem
        return ((av <= 0.85) & (au <= 0.27)) | ((v >= -0.85) & (v <= -0.3) & (au <= 0.85))
    if name == "ring":
        r2 = u * u + v * v
        return (r2 <= 0.92**2) & (r2 >= 0.5**2)
    if name == "diamond":  # taller than wide, so it is not just a rotated square
        return au / 0.62 + av / 0.95 <= 1.0
    if name == "crescent":
        return (u * u + v * v <= 0.9**2) & ((u - 0.42) ** 2 + v * v >= 0.72**2)
    if name == "cup":  # a U: square with a notch open to the top
        return (au <= 0.8) & (av <= 0.8) & ~((au <= 0.35) & (v <= 0.35))
    if name == "hourglass":  # two triangles tip to tip, vertical
        return (au <= 0.08 + 0.75 * av) & (av <= 0.85)
    raise ValueError(f"unknown shape index {shape}")


def _texture_mask(
    texture: int,
    a: np.ndarray,
    b: np.ndarray,
    X: np.ndarray,
    Y: np.ndarray,
    cx: float,
    cy: float,
    period: float,
    phase: float,
    rng: np.random.Generator,
) -> np.ndarray:
    """Two-colour pattern; a, b are (slightly rotated) coordinates in units of the period."""
    name = TEXTURES[texture]
    fa, fb = a - np.floor(a), b - np.floor(b)
    if name == "horizontal_stripes":
        return fb < 0.5
    if name == "vertical_stripes":
        return fa < 0.5
    if name == "diagonal_stripes":
        d = (a + b) * 0.7071
        return d - np.floor(d) < 0.5
    if name == "checkerboard":  # cells of 0.6 period: smaller cells blur away at 32 px
        return (np.floor(a / 0.6) + np.floor(b / 0.6)) % 2 == 0
    if name == "dots":  # small dots on a staggered lattice: not the inverse of the grid
        row = np.floor(b)
        ga = a + 0.5 * (row % 2)
        return (ga - np.floor(ga) - 0.5) ** 2 + (fb - 0.5) ** 2 < 0.26**2
    if name == "grid":  # thin lines, so it stays a grid whichever colour is on top
        return (fa < 0.2) | (fb < 0.2)
    if name == "concentric_rings":  # centred on the shape, so it reads as rings not stripes
        r = np.sqrt((X - cx) ** 2 + (Y - cy) ** 2) / period + phase
        return r - np.floor(r) < 0.5
    if name == "waves":  # horizontal stripes bent by a sine along x
        w = b + 0.4 * np.sin(2 * np.pi * a / 2.5)
        return w - np.floor(w) < 0.5
    if name == "speckle":  # random binary cells; drawn last so other draws don't depend on it
        n = int(np.ceil(2.0 / (0.3 * period))) + 1
        cells = rng.random((n, n)) < 0.5
        ix = np.minimum(((X + 1.0) / (0.3 * period)).astype(np.int64), n - 1)
        iy = np.minimum(((Y + 1.0) / (0.3 * period)).astype(np.int64), n - 1)
        return cells[iy, ix]
    if name == "zigzag":  # vertical stripes displaced by a triangle wave along y
        t = b / 1.5
        w = a + 0.5 * (2.0 * np.abs(2.0 * (t - np.floor(t)) - 1.0) - 1.0)
        return w - np.floor(w) < 0.5
    raise ValueError(f"unknown texture index {texture}")


def _colours(rng: np.random.Generator) -> np.ndarray:
    """Background + two texture colours: a random light grey background, the texture one random
    dark and one random mid colour. Colour carries neither class. Every texture colour is darker
    than the background, so a patch's *mean* brightness already says how much of it is object:
    the silhouette is visible to a ViT's linear patch embedding. (With a mid-grey background and
    one dark and one light texture colour, the texture averages to about the background and a
    patch-8 ViT stayed near chance on shape for 4 epochs while it learnt texture; with three
    fully random colours it stays at chance for many epochs.)"""
    c = rng.uniform(0.0, 1.0, size=(3, 3)).astype(np.float32)
    grey = np.full(3, 190.0 + 50.0 * c[0, 0], dtype=np.float32)
    return np.stack([grey, 80.0 * c[1], 90.0 + 70.0 * c[2]])


def render_with_mask(shape: int, texture: int, size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Render one image and its (size, size) bool foreground (silhouette) mask.

    Random numbers are drawn in a fixed order that does not depend on the classes (geometry,
    colours, noise; the speckle cells last), so the same ``rng`` state with the same shape but
    another texture gives the same silhouette, colours and noise: a clean cue-conflict pair.
    """
    X, Y = _grid(size)
    p = rng.random(8)
    scale = 0.6 + 0.25 * p[0]  # silhouette diameter as a fraction of the image width: >= 5 patches
    jit = 0.25 * (0.95 - scale)  # half of what keeps the shape inside the frame
    cx, cy = (2 * p[1] - 1) * jit, (2 * p[2] - 1) * jit
    rot = (2 * p[3] - 1) * _MAX_ROT
    period = 2.0 * (0.12 + 0.06 * p[4])  # normalised units: 7.7-11.5 px at 64 px
    alpha = (2 * p[5] - 1) * np.deg2rad(8.0)  # texture orientation jitter, well under a class gap
    cos, sin = np.float32(np.cos(rot)), np.float32(np.sin(rot))
    dx, dy = (X - cx) / scale, (Y - cy) / scale
    mask = _shape_mask(shape, cos * dx + sin * dy, -sin * dx + cos * dy)
    ca, sa = np.float32(np.cos(alpha)), np.float32(np.sin(alpha))
    a = (ca * X + sa * Y) / period + p[6]
    b = (-sa * X + ca * Y) / period + p[7]
    cols = _colours(rng)
    noise = rng.standard_normal((size, size, 3), dtype=np.float32) * 6.0  # mild, cue-free
    pattern = _texture_mask(texture, a, b, X, Y, cx, cy, period, p[6], rng)
    fg = np.where(pattern[..., None], cols[1], cols[2])
    img = np.where(mask[..., None], fg, cols[0]) + noise
    return np.clip(img + 0.5, 0, 255).astype(np.uint8), mask


def render(shape: int, texture: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """One (size, size, 3) uint8 image of ``SHAPES[shape]`` filled with ``TEXTURES[texture]``."""
    return render_with_mask(shape, texture, size, rng)[0]


def seeded_blocks(n: int, block: int, seed: int, key: int) -> np.ndarray:
    """``n`` indices in blocks of ``block``: block k is a permutation of 0..block-1 drawn from
    ``[seed, key, k]``, so every index comes once per block (labels stay balanced) and item i's
    index does not depend on ``n``. int64, shape (n,)."""
    blocks = [np.random.default_rng([seed, key, k]).permutation(block) for k in range(-(-n // block))]
    return np.concatenate(blocks)[:n].astype(np.int64)


class ShapesTextures(torch.utils.data.Dataset):
    """Seeded shape x texture images; ``label`` picks which class is the target.

    Label assignment: items come in blocks of ``num_shapes * num_textures``; each block holds every
    (shape, texture) pair once, in an order permuted by ``[seed, split_id + 10, block]``. So pairs
    are exactly balanced when ``num_images`` is a multiple of the block (otherwise within one),
    shape and texture are independent, and an item's labels do not depend on ``num_images``.
    """

    def __init__(
        self,
        num_images: int = 5000,
        image_size: int = 64,
        seed: int = 0,
        split: str = "train",
        num_shapes: int = 10,
        num_textures: int = 10,
        label: str = "shape",
        transform: Callable[[Image.Image], Any] | None = None,
    ):
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}: use one of {sorted(SPLITS)}")
        if label not in ("shape", "texture"):
            raise ValueError(f"unknown label {label!r}: use 'shape' or 'texture'")
        if not 1 <= num_shapes <= len(SHAPES):
            raise ValueError(
                f"num_shapes={num_shapes} is out of range: use 1..{len(SHAPES)} "
                f"(there are only {len(SHAPES)} shapes: {SHAPES})"
            )
        if not 1 <= num_textures <= len(TEXTURES):
            raise ValueError(
                f"num_textures={num_textures} is out of range: use "
                f"1..{len(TEXTURES)} (there are only {len(TEXTURES)} textures)"
            )
        if image_size < 16:
            raise ValueError(
                f"image_size={image_size} is too small for recognisable shapes and "
                "textures: use image_size >= 16 (64 is the default)"
            )
        if num_images < 1:
            raise ValueError(f"num_images={num_images}: use a positive number of images")
        if not 0 <= seed < 2**32:
            raise ValueError(f"seed={seed}: use an integer in [0, 2**32)")  # keeps keys 3 words
        self.num_images, self.image_size, self.seed = int(num_images), int(image_size), int(seed)
        self.split, self.split_id, self.label = split, SPLITS[split], label
        self.num_shapes, self.num_textures, self.transform = num_shapes, num_textures, transform
        pair = seeded_blocks(self.num_images, num_shapes * num_textures, self.seed, self.split_id + _LABEL_KEY)
        self.shape_labels: np.ndarray = pair // num_textures
        self.texture_labels: np.ndarray = pair % num_textures
        names = SHAPES[:num_shapes] if label == "shape" else TEXTURES[:num_textures]
        self.classes: list[str] = list(names)
        self.class_to_idx: dict[str, int] = {n: i for i, n in enumerate(self.classes)}
        self.targets: np.ndarray = self.shape_labels if label == "shape" else self.texture_labels

    def __len__(self) -> int:
        return self.num_images

    def item_rng(self, index: int) -> np.random.Generator:
        """The generator that item ``index`` is rendered from (fresh on every call)."""
        if not 0 <= index < self.num_images:
            raise IndexError(f"index {index} out of range for {self.num_images} images")
        return np.random.default_rng([self.seed, self.split_id, int(index)])

    def cue_conflict(self, shape: int, texture: int, index: int) -> Image.Image:
        """Item ``index``'s geometry, colours and noise with the given (shape, texture) pair."""
        if not (0 <= shape < self.num_shapes and 0 <= texture < self.num_textures):
            raise ValueError(
                f"(shape, texture)=({shape}, {texture}) out of range: use shape < "
                f"{self.num_shapes} and texture < {self.num_textures}"
            )
        key = (self.seed, self.split_id, int(index), self.image_size, int(shape), int(texture))
        pixels = _CACHE.get(key)
        if pixels is None:
            pixels = render(shape, texture, self.image_size, self.item_rng(index))
            if _CACHE_USED[0] + pixels.nbytes <= CACHE_BYTES:
                pixels.setflags(write=False)  # shared by every later read
                _CACHE[key] = pixels
                _CACHE_USED[0] += pixels.nbytes
        return Image.fromarray(pixels)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        index = int(index)
        if index < 0:  # python-style negative indices
            index += self.num_images
        image = self.cue_conflict(int(self.shape_labels[index]), int(self.texture_labels[index]), index)
        if self.transform is not None:
            image = self.transform(image)
        return image, int(self.targets[index])
