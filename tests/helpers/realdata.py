"""Access to the real data and weights shared *outside* the project, for tests.

The data lives in ``../shared/data`` relative to the project root, or in
``$MASKDISTILL_SHARED/data`` when the environment variable ``MASKDISTILL_SHARED``
is set (it then is the only place looked at).  Nothing here is ever copied into
the project; every helper calls :func:`pytest.skip` (naming the missing file)
when the data is absent, so the test suite still passes without it.

Loaders (torch tensors only, no torchvision):

* :func:`load_mnist_test` -- the 10,000 MNIST test images/labels (IDX, gzip).
* :func:`load_vit4mnist` -- PyTorch's trained ViT4MNIST demo mapped exactly onto
  ``timm.models.vision_transformer.VisionTransformer`` (see the shared README).
"""

from __future__ import annotations

import functools
import gzip
import math
import os
import pathlib
import struct

import pytest
import torch
from torch import nn

PROJECT_ROOT = pathlib.Path(__file__).resolve().parents[2]
ENV_VAR = "MASKDISTILL_SHARED"

MNIST_MEAN = 0.1307
MNIST_STD = 0.3081
MNIST_IMAGES = "mnist/t10k-images-idx3-ubyte.gz"
MNIST_LABELS = "mnist/t10k-labels-idx1-ubyte.gz"
VIT4MNIST = "models/vit4mnist.safetensors"
#: softmax scale of the original ViT4MNIST attention: dim**-0.5 with dim = 64.
VIT4MNIST_ATTN_SCALE = 0.125
VIT4MNIST_DIM, VIT4MNIST_HEADS, VIT4MNIST_DEPTH = 64, 8, 6


def shared_data_dir() -> pathlib.Path | None:
    """Return the shared data folder, or ``None`` when it does not exist.

    ``$MASKDISTILL_SHARED/data`` when the variable is set (non-empty), else
    ``<project root>/../shared/data``.
    """
    env = os.environ.get(ENV_VAR, "").strip()
    base = pathlib.Path(env).expanduser() if env else PROJECT_ROOT.parent / "shared"
    data = base / "data"
    return data.resolve() if data.is_dir() else None


def require(relpath: str) -> pathlib.Path:
    """Return ``shared_data_dir() / relpath``, or skip the calling test naming the missing file."""
    root = shared_data_dir()
    if root is None:
        where = f"${ENV_VAR}/data" if os.environ.get(ENV_VAR, "").strip() else "../shared/data"
        pytest.skip(f"shared data folder not found ({where}); needs {relpath}")
    path = root / relpath
    if not path.is_file():
        pytest.skip(f"shared data file missing: {path}")
    return path


def _read_idx_ubyte(path: pathlib.Path) -> torch.Tensor:
    """Parse a gzip-compressed IDX file of unsigned bytes into a uint8 tensor."""
    with gzip.open(path, "rb") as fh:
        data = fh.read()
    zero, dtype_code, ndim = struct.unpack_from(">HBB", data, 0)
    if zero != 0 or dtype_code != 0x08:
        raise ValueError(f"{path}: not an unsigned-byte IDX file (magic {data[:4].hex()})")
    dims = struct.unpack_from(f">{ndim}I", data, 4)
    offset = 4 + 4 * ndim
    if len(data) - offset != math.prod(dims):
        raise ValueError(f"{path}: payload of {len(data) - offset} bytes, header says {dims}")
    return torch.frombuffer(bytearray(data[offset:]), dtype=torch.uint8).reshape(dims)


@functools.lru_cache(maxsize=1)
def _mnist_test_cached(images_path: pathlib.Path, labels_path: pathlib.Path) -> tuple[torch.Tensor, torch.Tensor]:
    images = _read_idx_ubyte(images_path)
    labels = _read_idx_ubyte(labels_path)
    if images.dim() != 3 or labels.dim() != 1 or images.shape[0] != labels.shape[0]:
        raise ValueError(f"unexpected MNIST shapes {tuple(images.shape)} / {tuple(labels.shape)}")
    return images.unsqueeze(1), labels.long()


def load_mnist_test(n: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``n`` (default all 10,000) MNIST test images and labels.

    Returns images uint8 ``(n, 1, 28, 28)`` in 0..255 and labels int64 ``(n,)``.
    """
    images, labels = _mnist_test_cached(require(MNIST_IMAGES), require(MNIST_LABELS))
    total = images.shape[0]
    if n is None:
        n = total
    if not 0 <= n <= total:
        raise ValueError(f"n must be in [0, {total}], got {n}")
    return images[:n].clone(), labels[:n].clone()


def normalize(images_uint8: torch.Tensor) -> torch.Tensor:
    """uint8 images in 0..255 -> float32 ``(x / 255 - MNIST_MEAN) / MNIST_STD``."""
    if images_uint8.dtype != torch.uint8:
        raise TypeError(f"expected uint8 images, got {images_uint8.dtype}")
    return (images_uint8.float() / 255.0 - MNIST_MEAN) / MNIST_STD


def vit4mnist_to_timm(raw: dict[str, torch.Tensor], scale_q: bool = True) -> dict[str, torch.Tensor]:
    """Map the ViT4MNIST safetensors state dict onto timm names; every raw key must be used.

    With ``scale_q`` the q rows of each ``qkv`` are multiplied by
    ``0.125 / head_dim**-0.5`` so timm's ``head_dim**-0.5`` softmax scale reproduces
    the original ``64**-0.5``.  ``scale_q=False`` exists only for negative controls.
    """
    dim, head_dim = VIT4MNIST_DIM, VIT4MNIST_DIM // VIT4MNIST_HEADS
    q_factor = VIT4MNIST_ATTN_SCALE / head_dim**-0.5 if scale_q else 1.0
    names = {
        "cls": "cls_token",
        "pos": "pos_embed",
        "patch.bias": "patch_embed.proj.bias",
        "head1.weight": "head.0.weight",
        "head1.bias": "head.0.bias",
        "head2.weight": "head.2.weight",
        "head2.bias": "head.2.bias",
    }
    block_names = {"ln1": "norm1", "proj": "attn.proj", "ln2": "norm2", "fc1": "mlp.fc1", "fc2": "mlp.fc2"}
    for i in range(VIT4MNIST_DEPTH):
        for src, dst in block_names.items():
            for p in ("weight", "bias"):
                names[f"blocks.{i}.{src}.{p}"] = f"blocks.{i}.{dst}.{p}"
    out = {dst: raw[src] for src, dst in names.items()}
    out["patch_embed.proj.weight"] = raw["patch.weight"].reshape(dim, 1, 7, 7)
    for i in range(VIT4MNIST_DEPTH):
        qkv = raw[f"blocks.{i}.qkv.weight"].clone()
        qkv[:dim] *= q_factor
        out[f"blocks.{i}.attn.qkv.weight"] = qkv
    used = set(names) | {"patch.weight"} | {f"blocks.{i}.qkv.weight" for i in range(VIT4MNIST_DEPTH)}
    if set(raw) != used:
        raise KeyError(f"unmapped ViT4MNIST keys: {sorted(set(raw) - used)}")
    return {k: v.contiguous() for k, v in out.items()}


def build_vit4mnist() -> nn.Module:
    """timm ViT with the ViT4MNIST architecture (random weights, train mode)."""
    from timm.models.vision_transformer import VisionTransformer

    model = VisionTransformer(
        img_size=28,
        patch_size=7,
        in_chans=1,
        num_classes=10,
        embed_dim=VIT4MNIST_DIM,
        depth=VIT4MNIST_DEPTH,
        num_heads=VIT4MNIST_HEADS,
        mlp_ratio=2,
        qkv_bias=False,
        norm_layer=functools.partial(nn.LayerNorm, eps=1e-5),  # timm's default eps is 1e-6
        act_layer=nn.GELU,
    )
    model.norm = nn.Identity()  # the original has no final norm
    model.head = nn.Sequential(nn.Linear(VIT4MNIST_DIM, 128), nn.GELU(), nn.Linear(128, 10))
    return model


def load_vit4mnist(scale_q: bool = True) -> nn.Module:
    """The trained ViT4MNIST as a timm ``VisionTransformer`` in eval mode (strict load).

    Input: :func:`normalize`-d float images ``(B, 1, 28, 28)``; output: logits ``(B, 10)``.
    """
    from safetensors.torch import load_file

    raw = load_file(str(require(VIT4MNIST)))
    model = build_vit4mnist()
    model.load_state_dict(vit4mnist_to_timm(raw, scale_q=scale_q), strict=True)
    return model.eval()
