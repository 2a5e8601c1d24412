"""AdamW with the usual ViT weight-decay exclusions, and the per-step cosine schedule with linear
warm-up and a floor (the paper's Table 1: "Learning Rate Schedule: Cosine", warm-up epochs, minimal
learning rate)."""

from __future__ import annotations

import math
from typing import Dict, List, Optional

import torch
from torch import nn

from maskdistill.config import OptimConfig

# No weight decay on these (BEiT/MAE practice): position embeddings, CLS/mask tokens,
# relative-position tables; plus every bias and norm weight (all 1-D parameters).
NO_DECAY_NAMES = ("pos_embed", "cls_token", "dist_token", "mask_token", "reg_token", "relative_position_bias_table")


def decays(name: str, p: torch.Tensor) -> bool:
    return p.ndim > 1 and not any(n in name for n in NO_DECAY_NAMES)


def param_groups(model: nn.Module, weight_decay: float) -> List[Dict]:
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (decay if decays(name, p) else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def build_optimizer(model: nn.Module, cfg: OptimConfig, groups: Optional[List[Dict]] = None) -> torch.optim.AdamW:
    groups = [g for g in (groups if groups is not None else param_groups(model, cfg.weight_decay)) if g["params"]]
    if not groups:
        raise ValueError("no trainable parameters: everything is frozen (check freezing options).")
    fused = all(p.is_cuda for g in groups for p in g["params"]) and len(groups[0]["params"]) > 0
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps, fused=fused or None)


def cosine_lr(step: int, total_steps: int, warmup_steps: int, peak: float, floor: float) -> float:
    """Learning rate at optimizer step ``step`` (0-based): linear warm-up from 0 to ``peak`` over
    ``warmup_steps``, then cosine from ``peak`` to ``floor`` at ``total_steps``."""
    if step < warmup_steps:
        return peak * (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return floor + 0.5 * (peak - floor) * (1 + math.cos(math.pi * progress))


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for g in optimizer.param_groups:
        g["lr"] = lr * g.get("lr_scale", 1.0)
