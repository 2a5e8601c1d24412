"""The key layouts of the published masked-distillation checkpoints the paper compares (Fig. 3c) and
the timm architecture each one is: BEiT v2 (``unilm/beit2``, a BEiT with a shared relative position
bias and layer scale), FD (``SwinTransformer/Feature-Distillation``: the same BEiT layout under
``encoder.``, with an optional key bias), MILAN and dBOT (MAE code bases: a timm ViT), EVA-02 (an
EVA with rotary embeddings and SwiGLU; timm's own EVA filter renames its keys).

Each format says what to strip (a wrapper prefix), what is dropped and why (pre-training heads and
decoders, buffers timm recomputes) and how the timm keyword arguments follow from the shapes, so a
checkpoint of any width, depth, patch size or pooling maps onto its architecture."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Dict, Mapping, Tuple

import torch
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD, OPENAI_CLIP_MEAN, OPENAI_CLIP_STD

Drops = Tuple[Tuple[str, str], ...]  # (regex on the key, why it is dropped)
_BUFFERS: Drops = (
    (r"(^|\.)relative_position_index$", "a buffer timm recomputes"),
    (r"^rope\.", "rotary embedding buffers timm recomputes"),
)
_MAE_DECODER: Drops = (
    (r"^decoder_", "the pre-training decoder"),
    (r"^mask_token$", "the decoder's mask token (pre-training only)"),
)


@dataclass(frozen=True)
class Format:
    name: str
    family: str  # beit | vit | eva: which keyword arguments the shapes decide
    arch: str  # the default timm architecture (--arch overrides it)
    source: str  # the released code whose key layout this is
    prefix: str = ""  # stripped from every key that has it
    drops: Drops = ()
    mean: Tuple[float, ...] = IMAGENET_DEFAULT_MEAN
    std: Tuple[float, ...] = IMAGENET_DEFAULT_STD


FORMATS: Dict[str, Format] = {
    "beitv2": Format(
        "beitv2",
        "beit",
        "beit_base_patch16_224",
        "microsoft/unilm beit2 (modeling_pretrain.py, modeling_finetune.py)",
        drops=(
            (r"^mask_token$", "the pre-training mask token"),
            (r"^lm_head\.", "the head predicting VQ-KD codes (pre-training only)"),
            (r"^cls_pt_(layers|norm|lm_head)\.", "the patch-aggregation blocks of pre-training"),
        ),
    ),
    "fd": Format(
        "fd",
        "beit",
        "beit_base_patch16_224",
        "SwinTransformer/Feature-Distillation (models/vision_transformer.py, feature_distillation.py)",
        prefix="encoder.",
        drops=(
            (r"^(decoder|feature_model|ln_tgt)\.", "the FD decoder or the frozen teacher (pre-training only)"),
            # q.(k + b) = q.k + q.b adds the same logit to every key of a query: softmax removes it.
            (r"\.attn\.k_bias$", "a key bias, which softmax cancels exactly"),
        ),
    ),
    "milan": Format(
        "milan", "vit", "vit_base_patch16_224", "zejiangh/MILAN (models_milan.py, models_vit.py)", drops=_MAE_DECODER
    ),
    "dbot": Format(
        "dbot", "vit", "vit_base_patch16_224", "liuxingbin/dbot (models_mae.py, models_vit.py)", drops=_MAE_DECODER
    ),
    "eva": Format(
        "eva",
        "eva",
        "eva02_base_patch14_224",
        "baaivision/EVA EVA-02 (modeling_pretrain.py, modeling_finetune.py)",
        drops=(
            (r"^mask_token$", "the pre-training mask token"),
            (r"^lm_head\.", "the head regressing CLIP features (pre-training only)"),
        ),
        mean=OPENAI_CLIP_MEAN,
        std=OPENAI_CLIP_STD,
    ),
}


def split_dropped(fmt: Format, sd: Mapping[str, torch.Tensor]) -> Tuple[Dict[str, torch.Tensor], Dict[str, str]]:
    """(the keys kept, with the prefix stripped; {dropped key: why}). A checkpoint without the
    wrapper prefix (e.g. FD's fine-tuned encoder, saved on its own) is taken as it is."""
    kept: Dict[str, torch.Tensor] = {}
    dropped: Dict[str, str] = {}
    prefix = fmt.prefix if fmt.prefix and any(k.startswith(fmt.prefix) for k in sd) else ""
    for key, v in sd.items():
        k = key[len(prefix) :] if prefix and key.startswith(prefix) else key
        why = next((w for pat, w in fmt.drops + _BUFFERS if re.search(pat, k)), None)
        if why is None and prefix and k == key:
            why = f"outside the encoder ({prefix}*)"
        if why:
            dropped[key] = why
        else:
            kept[k] = v
    return kept, dropped


def _grid(sd: Mapping[str, torch.Tensor], prefix_tokens: int) -> int:
    """Patch grid side from the absolute position embedding or a relative position bias table."""
    if "pos_embed" in sd:
        return math.isqrt(sd["pos_embed"].shape[1] - prefix_tokens)
    for k in ("rel_pos_bias.relative_position_bias_table", "blocks.0.attn.relative_position_bias_table"):
        if k in sd:  # (2w - 1)^2 + 3 rows (the 3: CLS to token, token to CLS, CLS to CLS)
            return (math.isqrt(sd[k].shape[0] - 3) + 1) // 2
    return 0


def _ratio(hidden: int, dim: int) -> float:
    """An ``mlp_ratio`` for which timm's ``int(dim * mlp_ratio)`` gives back ``hidden``."""
    r = hidden / dim
    return r if int(dim * r) == hidden else (hidden + 0.5) / dim


def _eva_kwargs(sd: Mapping[str, torch.Tensor], dim: int) -> Dict[str, Any]:
    """EVA-02 (official names): separate or fused q/k/v, the sub-LN inside attention, and the SwiGLU
    MLP -- fused ``w12`` (Ti/S) or ``w1``/``w2`` with ``ffn_ln`` (B/L) -- or EVA-01's plain MLP."""
    b = "blocks.0."
    kw: Dict[str, Any] = {
        "qkv_fused": b + "attn.qkv.weight" in sd,
        "scale_attn_inner": b + "attn.inner_attn_ln.weight" in sd,
        "qkv_bias": b + "attn.q_bias" in sd,
    }
    if b + "mlp.w12.weight" in sd:
        kw.update(swiglu_mlp=True, scale_mlp=False, mlp_ratio=_ratio(sd[b + "mlp.w12.weight"].shape[0] // 2, dim))
    elif b + "mlp.w1.weight" in sd:
        kw.update(
            swiglu_mlp=True,
            scale_mlp=b + "mlp.ffn_ln.weight" in sd,
            mlp_ratio=_ratio(sd[b + "mlp.w1.weight"].shape[0], dim),
        )
    elif b + "mlp.fc1.weight" in sd:
        kw.update(swiglu_mlp=False, scale_mlp=False, mlp_ratio=_ratio(sd[b + "mlp.fc1.weight"].shape[0], dim))
    return kw


def infer_kwargs(fmt: Format, sd: Mapping[str, torch.Tensor]) -> Dict[str, Any]:
    """The ``timm.create_model`` keyword arguments the tensors of ``sd`` (timm key names) decide."""
    if "patch_embed.proj.weight" not in sd:
        raise KeyError("no patch_embed.proj.weight: this is not a ViT checkpoint of the chosen format.")
    dim, chans, patch = (int(s) for s in sd["patch_embed.proj.weight"].shape[:3])
    blocks = {int(m.group(1)) for k in sd if (m := re.match(r"blocks\.(\d+)\.", k))}
    kw: Dict[str, Any] = dict(embed_dim=dim, in_chans=chans, patch_size=patch, depth=max(blocks) + 1 if blocks else 0)
    tables = [
        sd[k]
        for k in ("rel_pos_bias.relative_position_bias_table", "blocks.0.attn.relative_position_bias_table")
        if k in sd
    ]
    kw["num_heads"] = int(tables[0].shape[1]) if tables else max(1, dim // 64)
    grid = _grid(sd, 1 if "cls_token" in sd else 0)
    if grid:
        kw["img_size"] = grid * patch
    kw["num_classes"] = int(sd["head.weight"].shape[0]) if "head.weight" in sd else 0
    kw["global_pool"] = "avg" if "fc_norm.weight" in sd and "norm.weight" not in sd else "token"
    if fmt.family == "eva":
        kw.update(_eva_kwargs(sd, dim))
    elif "blocks.0.mlp.fc1.weight" in sd:
        kw["mlp_ratio"] = _ratio(sd["blocks.0.mlp.fc1.weight"].shape[0], dim)
    if fmt.family == "beit":
        kw.update(
            use_abs_pos_emb="pos_embed" in sd,
            use_rel_pos_bias="blocks.0.attn.relative_position_bias_table" in sd,
            use_shared_rel_pos_bias="rel_pos_bias.relative_position_bias_table" in sd,
            qkv_bias="blocks.0.attn.q_bias" in sd,
            init_values=0.1 if "blocks.0.gamma_1" in sd else None,  # the value comes with the weights
        )
    elif fmt.family == "vit":
        kw["qkv_bias"] = "blocks.0.attn.qkv.bias" in sd
        kw["init_values"] = 1.0 if "blocks.0.ls1.gamma" in sd else None
    return kw


__all__ = ["FORMATS", "Format", "infer_kwargs", "split_dropped"]
