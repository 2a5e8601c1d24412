"""A fused attention path for BEiT-family students with relative position bias.

timm's BEiT attention passes the relative position bias to ``scaled_dot_product_attention`` as an
additive float mask, which keeps it off the flash kernel (the paper's student, Table 1, shares one
bias across blocks). FlexAttention adds the bias inside the fused kernel instead (``score_mod``) and
differentiates through it. ``use_flex_attention(model)`` swaps the attention *kernel* of timm's
``Attention`` modules and keeps their parameters, so checkpoints and ``state_dict`` are unchanged and
``use_timm_attention(model)`` undoes it. Numerically it matches timm's path (tested on CPU).
"""

from __future__ import annotations

import types
from typing import Optional

import torch
import torch.nn.functional as F
from timm.models.beit import Attention as BeitAttention
from torch import nn

_flex = None


def _flex_attention():
    global _flex
    if _flex is None:
        from torch.nn.attention.flex_attention import flex_attention

        # Compiled, flex_attention generates one fused kernel; eager it runs a reference
        # implementation (correct but slow), which is what CPU tests use.
        _flex = torch.compile(flex_attention, dynamic=False) if torch.cuda.is_available() else flex_attention
    return _flex


def _flex_forward(
    self: BeitAttention, x: torch.Tensor, shared_rel_pos_bias: Optional[torch.Tensor] = None
) -> torch.Tensor:
    B, N, C = x.shape
    bias = None if self.q_bias is None else torch.cat((self.q_bias, self.k_bias, self.v_bias))
    qkv = F.linear(x, self.qkv.weight, bias).reshape(B, N, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
    q, k, v = qkv.unbind(0)  # (B, H, N, D)
    rel = self._get_rel_pos_bias() if self.relative_position_bias_table is not None else None
    if shared_rel_pos_bias is not None:
        rel = shared_rel_pos_bias if rel is None else rel + shared_rel_pos_bias
    if rel is not None:
        rel = rel.reshape(-1, N, N)  # (H, N, N): per-block tables come as (1, H, N, N), shared as (H, N, N)
    if rel is None:
        out = F.scaled_dot_product_attention(q, k, v)  # no bias: flash kernel
    else:
        rel = rel.to(q.dtype)

        def add_bias(score, b, h, q_idx, kv_idx):
            return score + rel[h, q_idx, kv_idx]

        out = _flex_attention()(q, k, v, score_mod=add_bias)
    return self.proj_drop(self.proj(out.transpose(1, 2).reshape(B, N, C)))


def use_flex_attention(model: nn.Module) -> int:
    """Route every timm BEiT ``Attention`` in ``model`` through FlexAttention; returns how many.
    Attention dropout is not supported on this path (the paper's recipes use none)."""
    n = 0
    for m in model.modules():
        if isinstance(m, BeitAttention):
            if m.attn_drop.p > 0:
                raise ValueError("the flex attention path has no attention dropout; set attn_drop_rate=0.")
            m.forward = types.MethodType(_flex_forward, m)
            n += 1
    if n == 0:
        raise ValueError(
            f"{type(model).__name__} has no BEiT attention modules for the flex path; use student.attention=timm."
        )
    return n


def use_timm_attention(model: nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, BeitAttention) and "forward" in m.__dict__:
            del m.forward
