"""Layer-wise learning-rate decay and freezing for fine-tuning (paper Table 1, "CLIP/ViT-B/16":
layer decay 0.6, frozen patch projection; Sec. 4, Fig. 8c: fine-tuning only the top blocks).

Groups follow BEiT's fine-tuning code: the stem (patch embedding, CLS/register tokens, position
embedding) is group 0 with scale ``decay**(depth+1)``; block i is group i+1 with scale
``decay**(depth-i)``; the final norm and the head are the top group with scale 1 (14 groups for a
ViT-B/16). timm's ``param_groups_layer_decay`` puts a ViT's final norm into the last block's group
instead, which is why this is our own.
"""

from __future__ import annotations

import re
from typing import Dict, List, Tuple

from torch import nn

from maskdistill.train.optim import decays

_STEM = ("cls_token", "reg_token", "dist_token", "mask_token", "pos_embed", "patch_embed.", "norm_pre.")
_BLOCK = re.compile(r"^blocks\.(\d+)\.")


def num_blocks(model: nn.Module) -> int:
    blocks = getattr(model, "blocks", None)
    if blocks is None:
        raise TypeError(
            f"{type(model).__name__} has no .blocks: layer decay and block freezing need a "
            f"timm ViT/BEiT/EVA-style model."
        )
    return len(blocks)


def layer_id(name: str, depth: int) -> int:
    """0 for the stem, i+1 for block i, depth+1 for the final norm, head and anything after the blocks.
    A shared relative position bias (BEiT pre-training) goes to the top group, as in BEiT."""
    if name.startswith(_STEM):
        return 0
    m = _BLOCK.match(name)
    return int(m.group(1)) + 1 if m else depth + 1


def layer_decay_groups(model: nn.Module, weight_decay: float, layer_decay: float, prefix: str = "") -> List[Dict]:
    """AdamW parameter groups with ``lr_scale`` (the loop multiplies the scheduled lr by it) and
    weight decay off for 1-D parameters, tokens, position embeddings and bias tables. Parameters
    with ``requires_grad=False`` (frozen) are left out. ``prefix`` is stripped from names (a task
    module that holds the network as ``.model``)."""
    depth = num_blocks(model if not prefix else _sub(model, prefix))
    groups: Dict[Tuple[int, bool], Dict] = {}
    for full, p in model.named_parameters():
        if not p.requires_grad:
            continue
        name = full[len(prefix) :] if prefix and full.startswith(prefix) else full
        lid, dec = layer_id(name, depth), decays(name, p)
        g = groups.setdefault(
            (lid, dec),
            {
                "params": [],
                "names": [],
                "layer": lid,
                "weight_decay": weight_decay if dec else 0.0,
                "lr_scale": layer_decay ** (depth + 1 - lid),
            },
        )
        g["params"].append(p)
        g["names"].append(name)
    return [groups[k] for k in sorted(groups)]


def _sub(model: nn.Module, prefix: str) -> nn.Module:
    for part in prefix.rstrip(".").split("."):
        model = getattr(model, part)
    return model


def freeze(model: nn.Module, patch_projection: bool = False, blocks: int = 0, backbone: bool = False) -> List[str]:
    """Set ``requires_grad=False`` on the patch projection, on the stem and the first ``blocks``
    blocks (everything below a trainable block), or on the whole backbone (linear probe: only the
    head trains). Returns the frozen parameter names."""
    depth = num_blocks(model)
    if blocks < 0 or blocks > depth:
        raise ValueError(
            f"cannot freeze {blocks} blocks of a {depth}-block model; use 0..{depth} "
            f"(or the linear probe for a frozen backbone)."
        )
    head = _head_names(model)
    frozen = []
    for name, p in model.named_parameters():
        lid = layer_id(name, depth)
        hit = (
            (backbone and not name.startswith(head))
            or (patch_projection and name.startswith("patch_embed."))
            or (blocks > 0 and lid <= blocks)
        )
        if hit:
            p.requires_grad_(False)
            frozen.append(name)
    return frozen


def _head_names(model: nn.Module) -> Tuple[str, ...]:
    """Parameter-name prefixes of the classifier head (what a linear probe trains)."""
    return ("head.", "head_drop.") if hasattr(model, "head") else ("fc.", "classifier.")


__all__ = ["layer_id", "layer_decay_groups", "freeze", "num_blocks"]
