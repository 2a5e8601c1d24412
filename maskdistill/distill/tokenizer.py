"""BEiT v2's VQ-KD tokenizer (paper Sec. 5 and App. B, Fig. 9; Table 1 "VQ-KD" column) and the
frozen code extractor that turns it into the target side of masked distillation with code targets.

VQ-KD ("vector-quantised knowledge distillation"): a ViT encoder maps the image to one vector per
patch, a small MLP projects it to the code dimension, the codebook (``codebook.EMACodebook``)
replaces it by the nearest code by cosine, and a shallow transformer decoder on the code map
reconstructs the teacher's features of every patch. Loss: 1 - cos(reconstruction, teacher feature)
(BEiT v2: teacher features unwhitened, the cosine makes their scale irrelevant) plus the
commitment loss. The codes of an image are then the targets of MD with code targets: decoder D is
a linear map to K logits and R the cross-entropy at masked positions (BEiT v2's pre-training).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Tuple

import timm
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from timm.models.vision_transformer import VisionTransformer
from torch import nn

from maskdistill.config import TeacherConfig
from maskdistill.data.transforms import to_unit
from maskdistill.distill.codebook import EMACodebook
from maskdistill.distill.parts import Whitening
from maskdistill.models.loading import check_timm_name
from maskdistill.models.teacher import build_teacher, resample_tokens, teacher_grid


@dataclass
class VQKDConfig:
    """The tokenizer network. Defaults: Table 1 "VQ-KD" (encoder 12 layers, width 768, 12 heads,
    FFN 3072, patch 16; codebook 8192 x 32; 1 decoder layer at width 768)."""

    arch: str = "vit_base_patch16_224"  # the encoder (timm ViT, trained from scratch)
    kwargs: Dict[str, Any] = field(default_factory=dict)  # extra timm.create_model arguments
    num_codes: int = 8192
    code_dim: int = 32
    decoder_depth: int = 1
    decoder_heads: int = 0  # 0 = the encoder's
    decay: float = 0.99  # EMA decay of the codebook (BEiT v2)
    commitment: float = 1.0  # weight of the commitment loss (BEiT v2: beta = 1)
    kmeans_iters: int = 10
    # A code is dead (and restarted) when its EMA usage falls under this many tokens per step.
    dead_threshold: float = 1.0
    whitening: str = "none"  # N on the teacher's features before the cosine loss (BEiT v2: none)
    mean: Tuple[float, float, float] = (0.485, 0.456, 0.406)  # the encoder's input normalisation
    std: Tuple[float, float, float] = (0.229, 0.224, 0.225)


def _mlp(dim_in: int, dim_out: int) -> nn.Sequential:
    # BEiT v2's task layers between the backbones and the codebook / the targets.
    return nn.Sequential(nn.Linear(dim_in, dim_in), nn.Tanh(), nn.Linear(dim_in, dim_out))


class VQKD(nn.Module):
    """``forward(images) -> {"loss"}`` for training; ``codes(images)`` (B, N) for MD targets.
    Images are uint8 or floats in [0, 1]; the teacher (frozen, named ``teacher`` so that
    checkpoints leave it out) is needed for training only."""

    def __init__(
        self,
        encoder: VisionTransformer,
        codebook: EMACodebook,
        decoder: VisionTransformer,
        target_dim: int,
        mean: Sequence[float],
        std: Sequence[float],
        teacher: Optional[nn.Module] = None,
        whitening: str = "none",
    ) -> None:
        super().__init__()
        self.encoder, self.codebook, self.decoder = encoder, codebook, decoder
        self.encode_head = _mlp(encoder.embed_dim, codebook.dim)
        self.decode_head = _mlp(decoder.embed_dim, target_dim)
        self.teacher = teacher
        self.whiten = Whitening(whitening)
        self.target_dim = target_dim
        self.grid: Tuple[int, int] = tuple(encoder.patch_embed.grid_size)
        self.num_prefix = int(encoder.num_prefix_tokens)
        if tuple(decoder.patch_embed.grid_size) != self.grid:
            raise ValueError(
                f"the decoder's grid {tuple(decoder.patch_embed.grid_size)} differs from the encoder's {self.grid}."
            )
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1), persistent=False)

    @property
    def num_codes(self) -> int:
        return self.codebook.num_codes

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, C, H, W) in [0, 1] -> pre-quantisation vectors (B, N, d)."""
        tokens = self.encoder.forward_features((x - self.mean) / self.std)  # (B, p + N, C)
        return self.encode_head(tokens[:, self.num_prefix :])

    def decode(self, q: torch.Tensor) -> torch.Tensor:
        """codes (B, N, d) -> reconstructed teacher features (B, N, C_t). The decoder is a timm ViT
        with 1x1 patches over the (d, h, w) code map, so it has its own position embedding."""
        B, N, d = q.shape
        fmap = q.transpose(1, 2).reshape(B, d, *self.grid)  # (B, d, h, w)
        return self.decode_head(self.decoder.forward_features(fmap))

    def targets(self, x: torch.Tensor) -> torch.Tensor:
        """The teacher's patch features on the tokenizer's grid, whitened if configured (B, N, C_t)."""
        if self.teacher is None:
            raise RuntimeError(
                "this tokenizer was loaded without its teacher (for code extraction); "
                "training and reconstruction metrics need one."
            )
        with torch.no_grad():
            t = self.teacher(x)
            t = resample_tokens(
                t, teacher_grid(self.teacher, x.shape[-1], self.encoder.patch_embed.patch_size[0]), self.grid
            )
            return self.whiten(t)

    def reconstruct(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x in [0, 1] -> (reconstruction (B, N, C_t), codes (B, N), commitment loss)."""
        q, idx, commit = self.codebook(self.encode(x))
        return self.decode(q), idx, commit

    def forward(self, images: torch.Tensor) -> Dict[str, torch.Tensor]:
        x = to_unit(images)
        rec, _, commit = self.reconstruct(x)
        rec_loss = 1 - F.cosine_similarity(rec.float(), self.targets(x), dim=-1).mean()
        return {"loss": rec_loss + commit, "rec_loss": rec_loss.detach(), "commit_loss": commit.detach()}

    @torch.no_grad()
    def codes(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, C, H, W) in [0, 1] -> code indices (B, N), int64. Never updates the codebook."""
        was = self.codebook.training
        self.codebook.eval()
        try:
            return self.codebook(self.encode(x))[1]
        finally:
            self.codebook.train(was)

    @torch.no_grad()
    def reconstruction_cosine(self, x: torch.Tensor) -> float:
        """Mean cosine similarity between reconstruction and teacher features (codebook frozen)."""
        was = self.codebook.training
        self.codebook.eval()
        try:
            rec = self.reconstruct(x)[0]
        finally:
            self.codebook.train(was)
        return float(F.cosine_similarity(rec.float(), self.targets(x), dim=-1).mean())


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
    codebook = EMACodebook(cfg.num_codes, cfg.code_dim, cfg.decay, cfg.commitment, cfg.kmeans_iters, cfg.dead_threshold)
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


def same_teacher(a: str, b: str) -> bool:
    """Two teacher specs name the same teacher (paths compared after resolving)."""
    if a == b:
        return True
    pa, pb = Path(a).expanduser(), Path(b).expanduser()
    return pa.exists() and pb.exists() and pa.resolve() == pb.resolve()


class CodeTeacher(nn.Module):
    """T for MD with code targets: the frozen tokenizer maps images in [0, 1] to codes (B, N)."""

    returns_codes = True
    num_prefix = 0
    prefix_tokens = False

    def __init__(self, tokenizer: VQKD, name: str = "tokenizer") -> None:
        super().__init__()
        self.tokenizer = tokenizer
        self.name = name
        self.dim = tokenizer.num_codes  # the decoder predicts K logits
        self.grid = tokenizer.grid
        for p in self.parameters():
            p.requires_grad_(False)
        super().train(False)

    def train(self, mode: bool = True) -> "CodeTeacher":
        return super().train(False)  # frozen: the codebook never updates during MD

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.tokenizer.codes(images)


def load_code_teacher(path: str, teacher_spec: str, num_codes: int, img_size: int, grid: Sequence[int]) -> CodeTeacher:
    """Load a tokenizer for MD with code targets and check that it fits the run: same teacher,
    the configured codebook size (0 = any), the run's image size and the student's patch grid."""
    if not path:
        raise ValueError(
            "decoder.kind=tokenizer needs decoder.tokenizer=<run directory of `maskdistill tokenizer train`>."
        )
    info = tokenizer_info(path)[1]["tokenizer"]  # check what the meta data tells before loading weights
    if not same_teacher(str(info["teacher"]), teacher_spec):
        raise ValueError(
            f"the tokenizer {path} was built for teacher {info['teacher']!r}, but this run's "
            f"teacher is {teacher_spec!r}; set teacher.spec={info['teacher']} or train a tokenizer "
            f"for {teacher_spec}."
        )
    if num_codes and num_codes != int(info["num_codes"]):
        raise ValueError(
            f"the tokenizer {path} has a codebook of {info['num_codes']} codes, but this run asks for "
            f"decoder.codebook_size={num_codes}; set decoder.codebook_size={info['num_codes']} (or 0) "
            f"or train a tokenizer with tokenizer.num_codes={num_codes}."
        )
    if int(info["img_size"]) != img_size:
        raise ValueError(
            f"the tokenizer {path} was trained on {info['img_size']} px images, this run uses "
            f"data.img_size={img_size}; set data.img_size={info['img_size']}."
        )
    if tuple(info["grid"]) != tuple(grid):
        raise ValueError(
            f"the tokenizer's patch grid {tuple(info['grid'])} differs from the student's {tuple(grid)}, "
            f"and codes cannot be resampled; give the student the tokenizer's patch size "
            f"({img_size // int(info['grid'][0])})."
        )
    tok, info = load_tokenizer(path)
    return CodeTeacher(tok, f"VQ-KD codes ({tok.num_codes}) of {info['teacher']}")


__all__ = [
    "VQKDConfig",
    "VQKD",
    "build_encoder",
    "build_vqkd",
    "build_tokenizer",
    "load_tokenizer",
    "tokenizer_info",
    "CodeTeacher",
    "load_code_teacher",
    "same_teacher",
    "vqkd_config",
]
