"""The whitening N, decoder D and objective R of the paper's Eq. 1 (Sec. 2, Fig. 1a).

N whitens the teacher's tokens so that targets of any teacher share one scale (LayerNorm without
affine parameters, as FD and MaskAlign; the paper: "crucial ... addressing the issue of varying
statistical properties across features of different teacher models"). D maps student tokens into
the target space (teacher and student widths may differ). R compares prediction and target.
With code targets (BEiT v2, paper Sec. 5 / App. B) D is a linear map to the tokenizer's K logits
and R the cross-entropy against the codes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from timm.models.vision_transformer import Block
from torch import nn

from maskdistill.config import DecoderConfig, ObjectiveConfig


class Whitening(nn.Module):
    """N: per-token standardisation over channels (LayerNorm without affine) or identity."""

    def __init__(self, kind: str = "layernorm", eps: float = 1e-6):
        super().__init__()
        if kind not in ("layernorm", "none"):
            raise ValueError(f"whitening {kind!r} is unknown; use layernorm or none.")
        self.kind, self.eps = kind, eps

    def forward(self, t: torch.Tensor) -> torch.Tensor:  # (B, N, C) -> (B, N, C), float32
        t = t.float()
        return F.layer_norm(t, t.shape[-1:], eps=self.eps) if self.kind == "layernorm" else t


class TransformerDecoder(nn.Module):
    """k pre-norm transformer blocks at the student's width, then a linear map to the targets
    (MILAN / MAE style)."""

    def __init__(self, in_dim: int, out_dim: int, depth: int, num_heads: int):
        super().__init__()
        self.blocks = nn.Sequential(*[Block(in_dim, num_heads, mlp_ratio=4.0, qkv_bias=True) for _ in range(depth)])
        self.norm = nn.LayerNorm(in_dim)
        self.proj = nn.Linear(in_dim, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.norm(self.blocks(x)))


def build_decoder(cfg: DecoderConfig, in_dim: int, out_dim: int, student_heads: int) -> nn.Module:
    """D: "fc" (FD / EVA / dBOT), a transformer (MILAN / MAE), or "tokenizer" (BEiT v2: a linear
    map to the K code logits; ``out_dim`` is then K)."""
    if cfg.kind in ("fc", "tokenizer"):
        return nn.Linear(in_dim, out_dim)
    heads = cfg.num_heads or student_heads
    if in_dim % heads:
        raise ValueError(
            f"decoder.num_heads={heads} does not divide the student width {in_dim}; set "
            f"decoder.num_heads to a divisor of {in_dim} (0 = the student's heads)."
        )
    return TransformerDecoder(in_dim, out_dim, cfg.depth, heads)


def objective(pred: torch.Tensor, target: torch.Tensor, cfg: ObjectiveConfig) -> torch.Tensor:
    """R, averaged over the selected tokens: pred, target (M, C) -> scalar; for "ce", pred are
    logits (M, K) and target code indices (M,)."""
    pred = pred.float()
    if cfg.loss == "ce":
        if target.is_floating_point() or target.dim() != 1:
            raise ValueError(
                "objective.loss=ce needs code indices as targets (decoder.kind=tokenizer); "
                f"got a {tuple(target.shape)} {target.dtype} target."
            )
        return F.cross_entropy(pred, target)
    if not target.is_floating_point():
        raise ValueError(
            f"objective.loss={cfg.loss} regresses features, but the targets are codes; use "
            f"objective.loss=ce with decoder.kind=tokenizer."
        )
    if cfg.loss == "smooth_l1":
        return F.smooth_l1_loss(pred, target, beta=cfg.beta)
    if cfg.loss == "mse":
        return F.mse_loss(pred, target)
    if cfg.loss == "cosine":  # negative cosine similarity (EVA, dBOT)
        return -F.cosine_similarity(pred, target, dim=-1).mean()
    raise ValueError(
        f"objective.loss={cfg.loss!r} is unknown; use smooth_l1, mse or cosine (features), or ce (tokenizer codes)."
    )
