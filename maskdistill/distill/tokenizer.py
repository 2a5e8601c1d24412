"""BEiT v2's VQ-KD tokenizer (paper Sec. 5 and App. B, Fig. 9; Table 1 "VQ-KD" column) and the
frozen code extractor that turns it into the target side of masked distillation with code targets.

VQ-KD ("vector-quantised knowledge distillation"): a ViT encoder maps the image to one vector per
patch, a small MLP projects it to the code dimension, the codebook (``codebook.EMACodebook``)
replaces it by the nearest code by cosine, and a shallow transformer decoder on the code map
reconstructs the teacher's features of every patch. Loss: 1 - cos(reconstruction, teacher feature)
(BEiT v2: teacher features unwhitened, the cosine makes their scale irrelevant) plus the
commitment loss. The codes of an image are then the targets of MD with code targets: decoder D is
a linear map to K logits and R the cross-entropy at masked positions (BEiT v2's pre-training).

This module holds the network and its config; ``tokenizer_build`` builds it from a config or a saved
run, ``code_teacher`` wraps a trained one as the frozen teacher of MD with code targets.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from timm.models.vision_transformer import VisionTransformer
from torch import nn

from maskdistill.data.transforms import to_unit
from maskdistill.distill.codebook import EMACodebook
from maskdistill.distill.parts import Whitening
from maskdistill.models.teacher import resample_tokens, teacher_grid


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


__all__ = ["VQKDConfig", "VQKD"]
