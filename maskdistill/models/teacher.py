"""The frozen teacher T of the paper's Eq. 1 (Sec. 2): any timm ViT, an OpenCLIP tower, a
maskdistill checkpoint, or per-patch pixels (classical MIM, Fig. 1c).

A teacher takes images in [0, 1] -- the *same crop* the student sees -- applies its own input
normalisation (from its ``pretrained_cfg``), and returns target tokens (B, N, C) on the student's
patch grid. It is frozen: eval mode whatever ``train()`` is called with, no gradients, parameters
never change.
"""

from __future__ import annotations

import logging
import math
from typing import Any, Dict, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from maskdistill.config import TeacherConfig
from maskdistill.models.loading import create_timm
from maskdistill.models.spec import parse_spec

log = logging.getLogger(__name__)


class Teacher(nn.Module):
    """Wraps a timm-style backbone (with ``forward_intermediates``) as a frozen target extractor."""

    def __init__(
        self,
        backbone: nn.Module,
        mean: Sequence[float],
        std: Sequence[float],
        layer: int = -1,
        final_norm: bool = True,
        projection: bool = False,
        prefix_tokens: bool = False,
        name: str = "teacher",
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.name = name
        depth = len(backbone.blocks)
        if not -depth <= layer < depth:
            raise ValueError(
                f"teacher.layer={layer} is out of range for {name}, which has {depth} "
                f"blocks; use 0..{depth - 1} or -1 for the last."
            )
        self.layer = layer % depth
        self.final_norm = final_norm
        self.projection = projection
        self.prefix_tokens = prefix_tokens
        if projection and not isinstance(getattr(backbone, "head", None), nn.Linear):
            raise ValueError(
                f"teacher.projection=true needs a linear projection head (CLIP towers "
                f"in timm have one); {name} has {type(getattr(backbone, 'head', None)).__name__}."
            )
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1), persistent=False)
        self.num_prefix = int(getattr(backbone, "num_prefix_tokens", 1))
        self.grid = tuple(backbone.patch_embed.grid_size)
        self.patch_size = tuple(backbone.patch_embed.patch_size)
        self.dim = backbone.head.out_features if projection else backbone.embed_dim
        self.freeze()

    def freeze(self) -> "Teacher":
        for p in self.parameters():
            p.requires_grad_(False)
        return super().train(False)

    def train(self, mode: bool = True) -> "Teacher":
        # A teacher stays in eval mode (dropout, drop path, BN statistics off) whatever the loop asks.
        return super().train(False)

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """images (B, C, H, W) in [0, 1] -> tokens (B, p + N, C) or (B, N, C) without prefix."""
        x = (images - self.mean) / self.std
        out = self.backbone.forward_intermediates(
            x,
            indices=[self.layer],
            norm=self.final_norm,
            output_fmt="NLC",
            intermediates_only=True,
            return_prefix_tokens=True,
            stop_early=True,
        )[0]
        # timm returns (patches, prefix) only when the model has prefix tokens (SigLIP has none).
        patches, prefix = out if isinstance(out, tuple) else (out, out[:, :0])
        tokens = torch.cat([prefix, patches], 1) if self.prefix_tokens else patches
        if self.projection:
            tokens = self.backbone.head(tokens)
        return tokens


class PixelTeacher(nn.Module):
    """MAE's target (classical MIM, Fig. 1c): the pixels of each patch of the student-normalised
    image, flattened (p1, p2, c). With whitening N = LayerNorm this is MAE's per-patch normalised
    pixel target."""

    def __init__(self, patch_size: int, in_chans: int, mean: Sequence[float], std: Sequence[float]):
        super().__init__()
        self.patch = patch_size
        self.dim = patch_size * patch_size * in_chans
        self.num_prefix = 0
        self.prefix_tokens = False
        self.name = "pixels"
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1), persistent=False)

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = (images - self.mean) / self.std
        B, C, H, W = x.shape
        p = self.patch
        x = x.reshape(B, C, H // p, p, W // p, p).permute(0, 2, 4, 3, 5, 1)  # (B, h, w, p, p, C)
        return x.reshape(B, (H // p) * (W // p), p * p * C)


def resample_tokens(
    tokens: torch.Tensor, src: Tuple[int, int], dst: Tuple[int, int], num_prefix: int = 0
) -> torch.Tensor:
    """Bilinearly resample a token map (B, p + Hs*Ws, C) from grid ``src`` to ``dst`` (prefix kept),
    for teacher/student pairs with different patch sizes (e.g. 14 vs 16)."""
    if tuple(src) == tuple(dst):
        return tokens
    prefix, x = tokens[:, :num_prefix], tokens[:, num_prefix:]
    B, N, C = x.shape
    x = x.transpose(1, 2).reshape(B, C, *src).float()
    x = F.interpolate(x, size=dst, mode="bilinear", align_corners=False, antialias=True)
    x = x.flatten(2).transpose(1, 2).to(tokens.dtype)
    return torch.cat([prefix, x], 1)


def build_teacher(
    cfg: TeacherConfig,
    img_size: int,
    student_patch: int,
    in_chans: int = 3,
    student_mean: Sequence[float] = (0.485, 0.456, 0.406),
    student_std: Sequence[float] = (0.229, 0.224, 0.225),
    pretrained: bool = True,
) -> nn.Module:
    """Build the teacher named by ``cfg.spec``. ``pretrained=False`` builds the architecture only
    (for dry runs and tests that must not download)."""
    spec = parse_spec(cfg.spec).without_options("teacher.spec")
    # TeacherConfig's fields of the same names choose the block and the token options of Teacher.
    kw: Dict[str, Any] = {k: getattr(cfg, k) for k in ("layer", "final_norm", "projection", "prefix_tokens")}
    kw["name"] = cfg.spec
    if spec.kind == "pixels":
        return PixelTeacher(student_patch, in_chans, student_mean, student_std)
    if spec.kind == "timm":
        extra = {} if cfg.projection else {"num_classes": 0}
        model = create_timm(
            spec.name, weights=spec.weights, pretrained=pretrained and not spec.weights, img_size=img_size, **extra
        )
        patch = int(model.patch_embed.patch_size[0])
        if img_size % patch:
            raise ValueError(
                f"image size {img_size} is not divisible by the teacher's patch size {patch} "
                f"({spec.name}); pick data.img_size as a multiple of both patch sizes."
            )
        dc = model.pretrained_cfg or {}
        return Teacher(model, dc.get("mean", student_mean), dc.get("std", student_std), **kw)
    if spec.kind == "open_clip":
        from maskdistill.models.openclip import load_openclip_tower

        tower, mean, std = load_openclip_tower(spec.name, spec.weights, img_size, pretrained=pretrained)
        return Teacher(tower, mean, std, **kw)
    from maskdistill.models.backbone import load_backbone  # a maskdistill run or checkpoint directory

    model, meta = load_backbone(spec.name)
    return Teacher(model, meta["mean"], meta["std"], **kw)


def teacher_grid(teacher: nn.Module, img_size: int, student_patch: int) -> Tuple[int, int]:
    if isinstance(teacher, PixelTeacher):
        return (img_size // student_patch,) * 2
    g = teacher.grid
    if math.prod(g) <= 0:
        raise ValueError(f"teacher {teacher.name} reports an empty patch grid {g}.")
    return g


def describe(teacher: nn.Module) -> str:
    return f"{teacher.name}: {teacher.dim}-d targets" + (
        f", grid {teacher.grid}, block {teacher.layer}" if isinstance(teacher, Teacher) else ""
    )


__all__ = ["Teacher", "PixelTeacher", "build_teacher", "resample_tokens", "teacher_grid", "describe"]
