"""State dicts in the key layouts of the official masked-distillation releases, written out key by
key from each project's model code (not from timm), with random values: BEiT v2's pre-training model
(unilm ``beit2/modeling_pretrain.py``: shared relative position bias, layer scale, ``lm_head``,
``cls_pt_layers``), FD's (``encoder.`` + a BEiT-style ViT with per-block relative position bias and
a key bias, ``decoder.0`` a 1x1 Conv1d), MILAN's and dBOT's (MAE: timm blocks, ``decoder_*``), and
EVA-02's (separate q/k/v projections with ``q_bias``/``v_bias``, SwiGLU ``w1``/``w2``/``ffn_ln``/``w3``,
rotary buffers, ``lm_head``). Tiny sizes: width 32, two blocks of two heads, 8 px patches on 32 px."""

from __future__ import annotations

from typing import Dict

import torch

D, DEPTH, HEADS, P, GRID, MLP = 32, 2, 2, 8, 4, 128
N = GRID * GRID


class _Rand:
    def __init__(self, seed: int) -> None:
        self.g = torch.Generator().manual_seed(seed)

    def __call__(self, *shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=self.g) * 0.1


def _norm(sd: Dict[str, torch.Tensor], name: str, r: _Rand, dim: int = D) -> None:
    sd[f"{name}.weight"], sd[f"{name}.bias"] = 1 + r(dim), r(dim)


def _linear(sd: Dict[str, torch.Tensor], name: str, r: _Rand, out: int, inp: int, bias: bool = True) -> None:
    sd[f"{name}.weight"] = r(out, inp)
    if bias:
        sd[f"{name}.bias"] = r(out)


def _table_rows(grid: int = GRID) -> int:
    return (2 * grid - 1) ** 2 + 3


def _beit_block(sd, pre: str, r: _Rand, rel_table: bool = False, k_bias: bool = False) -> None:
    sd[f"{pre}.gamma_1"], sd[f"{pre}.gamma_2"] = r(D), r(D)
    _norm(sd, f"{pre}.norm1", r)
    _linear(sd, f"{pre}.attn.qkv", r, 3 * D, D, bias=False)
    sd[f"{pre}.attn.q_bias"], sd[f"{pre}.attn.v_bias"] = r(D), r(D)
    if k_bias:
        sd[f"{pre}.attn.k_bias"] = r(D)
    if rel_table:
        sd[f"{pre}.attn.relative_position_bias_table"] = r(_table_rows(), HEADS)
        sd[f"{pre}.attn.relative_position_index"] = torch.zeros(N + 1, N + 1, dtype=torch.long)
    _linear(sd, f"{pre}.attn.proj", r, D, D)
    _norm(sd, f"{pre}.norm2", r)
    _linear(sd, f"{pre}.mlp.fc1", r, MLP, D)
    _linear(sd, f"{pre}.mlp.fc2", r, D, MLP)


def _patch(sd, r: _Rand, pre: str = "") -> None:
    sd[f"{pre}cls_token"] = r(1, 1, D)
    sd[f"{pre}patch_embed.proj.weight"], sd[f"{pre}patch_embed.proj.bias"] = r(D, 3, P, P), r(D)


def beitv2_pretrain(seed: int = 0, vocab: int = 64) -> Dict[str, torch.Tensor]:
    r, sd = _Rand(seed), {}
    _patch(sd, r)
    sd["mask_token"] = r(1, 1, D)
    sd["rel_pos_bias.relative_position_bias_table"] = r(_table_rows(), HEADS)
    sd["rel_pos_bias.relative_position_index"] = torch.zeros(N + 1, N + 1, dtype=torch.long)
    for i in range(DEPTH):
        _beit_block(sd, f"blocks.{i}", r)
    _norm(sd, "norm", r)
    _linear(sd, "lm_head", r, vocab, D)
    _beit_block(sd, "cls_pt_layers.0", r)  # the patch-aggregation block (early_layers=1, head_layers=1)
    return sd


def fd_pretrain(seed: int = 0, teacher_dim: int = 48) -> Dict[str, torch.Tensor]:
    r, enc = _Rand(seed), {}
    _patch(enc, r)
    for i in range(DEPTH):
        _beit_block(enc, f"blocks.{i}", r, rel_table=True, k_bias=True)
    _norm(enc, "norm", r)
    sd = {f"encoder.{k}": v for k, v in enc.items()}
    sd["decoder.0.weight"], sd["decoder.0.bias"] = r(teacher_dim, D, 1), r(teacher_dim)
    return sd


def _timm_block(sd, pre: str, r: _Rand, dim: int = D, hidden: int = MLP) -> None:
    _norm(sd, f"{pre}.norm1", r, dim)
    _linear(sd, f"{pre}.attn.qkv", r, 3 * dim, dim)
    _linear(sd, f"{pre}.attn.proj", r, dim, dim)
    _norm(sd, f"{pre}.norm2", r, dim)
    _linear(sd, f"{pre}.mlp.fc1", r, hidden, dim)
    _linear(sd, f"{pre}.mlp.fc2", r, dim, hidden)


def _mae_encoder(sd, r: _Rand, final: str = "norm") -> None:
    _patch(sd, r)
    sd["pos_embed"] = r(1, N + 1, D)  # fixed sin-cos in MAE, saved all the same
    for i in range(DEPTH):
        _timm_block(sd, f"blocks.{i}", r)
    _norm(sd, final, r)


def milan_pretrain(seed: int = 0, dec: int = 16) -> Dict[str, torch.Tensor]:
    r, sd = _Rand(seed), {}
    _mae_encoder(sd, r)
    _linear(sd, "decoder_embed", r, dec, D)
    sd["mask_token"], sd["decoder_pos_embed"] = r(1, 1, dec), r(1, N + 1, dec)
    pre = "decoder_blocks.0"  # MILAN's prompting decoder: separate q and kv projections
    _norm(sd, f"{pre}.norm1", r, dec)
    _linear(sd, f"{pre}.attn.q", r, dec, dec)
    _linear(sd, f"{pre}.attn.kv", r, 2 * dec, dec)
    _linear(sd, f"{pre}.attn.proj", r, dec, dec)
    _norm(sd, f"{pre}.norm2", r, dec)
    _linear(sd, f"{pre}.mlp.fc1", r, 4 * dec, dec)
    _linear(sd, f"{pre}.mlp.fc2", r, dec, 4 * dec)
    _norm(sd, "decoder_norm", r, dec)
    _linear(sd, "decoder_pred", r, 768, dec)
    return sd


def milan_finetuned(seed: int = 0, classes: int = 5) -> Dict[str, torch.Tensor]:
    """MAE's ``models_vit`` with global pooling: ``fc_norm`` and ``head``, no final ``norm``."""
    r, sd = _Rand(seed), {}
    _mae_encoder(sd, r, final="fc_norm")
    _linear(sd, "head", r, classes, D)
    return sd


def dbot_pretrain(seed: int = 0, dec: int = 16) -> Dict[str, torch.Tensor]:
    r, sd = _Rand(seed), {}
    _mae_encoder(sd, r)
    _linear(sd, "decoder_embed", r, dec, D)
    sd["decoder_pos_embed"], sd["mask_token"] = r(1, N + 1, dec), r(1, 1, dec)
    _timm_block(sd, "decoder_blocks.0", r, dec, 4 * dec)
    _norm(sd, "decoder_norm", r, dec)
    _linear(sd, "decoder_predp", r, D, dec)
    return sd


def eva02_pretrain(seed: int = 0, hidden: int = 64, clip_dim: int = 48) -> Dict[str, torch.Tensor]:
    """EVA-02 B/L layout (sub-LN SwiGLU; 14 px patches as in the release, 28 px images)."""
    r, sd = _Rand(seed), {}
    sd["cls_token"], sd["mask_token"], sd["pos_embed"] = r(1, 1, D), r(1, 1, D), r(1, 5, D)
    sd["patch_embed.proj.weight"], sd["patch_embed.proj.bias"] = r(D, 3, 14, 14), r(D)
    sd["rope.freqs_cos"], sd["rope.freqs_sin"] = r(4, D // HEADS), r(4, D // HEADS)
    for i in range(DEPTH):
        pre = f"blocks.{i}"
        _norm(sd, f"{pre}.norm1", r)
        for p in ("q", "k", "v"):
            _linear(sd, f"{pre}.attn.{p}_proj", r, D, D, bias=False)
        sd[f"{pre}.attn.q_bias"], sd[f"{pre}.attn.v_bias"] = r(D), r(D)
        _linear(sd, f"{pre}.attn.proj", r, D, D)
        _norm(sd, f"{pre}.norm2", r)
        _linear(sd, f"{pre}.mlp.w1", r, hidden, D)
        _linear(sd, f"{pre}.mlp.w2", r, hidden, D)
        _norm(sd, f"{pre}.mlp.ffn_ln", r, hidden)
        _linear(sd, f"{pre}.mlp.w3", r, D, hidden)
    _norm(sd, "norm", r)
    _linear(sd, "lm_head", r, clip_dim, D)
    return sd


# format -> (builder, --kwarg overrides the shapes cannot decide: two heads of width 16)
OFFICIAL = {
    "beitv2": (beitv2_pretrain, {}),
    "fd": (fd_pretrain, {}),
    "milan": (milan_pretrain, {"num_heads": HEADS}),
    "dbot": (dbot_pretrain, {"num_heads": HEADS}),
    "eva": (eva02_pretrain, {"num_heads": HEADS}),
}
