"""N (whitening), R (objectives), D (decoders) and the token selection of M_out (paper Eq. 1),
checked against values computed by hand on tiny tensors."""

from __future__ import annotations

import pytest
import torch

from maskdistill.config import DecoderConfig, ObjectiveConfig
from maskdistill.data.transforms import to_unit
from maskdistill.distill.distiller import select_tokens
from maskdistill.distill.parts import TransformerDecoder, Whitening, build_decoder, objective


# ------------------------------------------------------------------ N: whitening
@pytest.mark.parametrize("scale, offset", [(1.0, 0.0), (1e3, -50.0), (0.1, 7.0), (30.0, 1e4)])
def test_layernorm_whitening_zero_mean_unit_variance_per_token(scale: float, offset: float) -> None:
    g = torch.Generator().manual_seed(0)
    # Per-channel offsets too, so the test fails if whitening normalised over tokens, not channels.
    t = (torch.randn(3, 5, 64, generator=g) + torch.linspace(-2, 2, 64)) * scale + offset
    w = Whitening("layernorm")(t)
    assert w.dtype == torch.float32
    mean, var = w.mean(-1), w.var(-1, unbiased=False)
    assert mean.abs().max() < 1e-4 * max(1.0, offset / scale)
    assert torch.allclose(var, torch.ones_like(var), atol=2e-3), var
    # Per token, not per batch: every token is whitened on its own.
    assert torch.allclose(Whitening("layernorm")(t[:1, 2:3]), w[:1, 2:3], atol=1e-5)


def test_whitening_makes_teachers_of_different_scale_comparable() -> None:
    t = torch.randn(2, 4, 32, generator=torch.Generator().manual_seed(1))
    w = Whitening("layernorm")
    assert torch.allclose(w(t), w(t * 250.0 + 3.0), atol=1e-4)


def test_whitening_none_is_identity_and_returns_float32() -> None:
    t = torch.randn(2, 4, 8, generator=torch.Generator().manual_seed(2)) * 5 + 1
    assert torch.equal(Whitening("none")(t), t)
    tb = t.to(torch.bfloat16)
    out = Whitening("none")(tb)
    assert out.dtype == torch.float32 and torch.equal(out, tb.float())


def test_whitening_rejects_unknown_kind() -> None:
    with pytest.raises(ValueError, match="layernorm or none"):
        Whitening("batchnorm")


# ------------------------------------------------------------------ R: objectives
def test_smooth_l1_with_beta_matches_hand_computed_values() -> None:
    pred = torch.tensor([[0.0, 0.0], [1.0, -4.0]])
    tgt = torch.tensor([[1.0, 3.0], [1.5, 0.0]])
    # |d| = 1, 3, 0.5, 4.  beta = 2: 0.5 d^2 / beta if |d| < beta else |d| - beta / 2.
    by_hand_b2 = (0.5 * 1 / 2 + (3 - 1) + 0.5 * 0.25 / 2 + (4 - 1)) / 4
    assert objective(pred, tgt, ObjectiveConfig(loss="smooth_l1", beta=2.0)).item() == pytest.approx(by_hand_b2)
    # beta = 1 (torch's default) gives a different value, so beta really is passed through.
    by_hand_b1 = (0.5 * 1 / 1 + (3 - 0.5) + 0.5 * 0.25 / 1 + (4 - 0.5)) / 4
    assert objective(pred, tgt, ObjectiveConfig(loss="smooth_l1", beta=1.0)).item() == pytest.approx(by_hand_b1)
    assert by_hand_b1 != pytest.approx(by_hand_b2)


def test_mse_matches_hand_computed_value() -> None:
    pred = torch.tensor([[0.0, 0.0], [1.0, -4.0]])
    tgt = torch.tensor([[1.0, 3.0], [1.5, 0.0]])
    assert objective(pred, tgt, ObjectiveConfig(loss="mse")).item() == pytest.approx((1 + 9 + 0.25 + 16) / 4)


def test_negative_cosine_matches_hand_computed_values() -> None:
    cfg = ObjectiveConfig(loss="cosine")
    a = torch.tensor([[1.0, 2.0, 3.0]])
    assert objective(a, a.clone(), cfg).item() == pytest.approx(-1.0)
    assert objective(5 * a, a, cfg).item() == pytest.approx(-1.0)  # scale invariant
    assert objective(-a, a, cfg).item() == pytest.approx(1.0)
    # Rows: identical (-1), orthogonal (0), 45 degrees (-1/sqrt 2); mean over rows.
    pred = torch.tensor([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0]])
    tgt = torch.tensor([[2.0, 0.0], [0.0, 3.0], [1.0, 1.0]])
    assert objective(pred, tgt, cfg).item() == pytest.approx((-1 + 0 - 2**-0.5) / 3)


def test_objective_casts_prediction_to_float32_and_rejects_unknown_loss() -> None:
    pred = torch.tensor([[0.5, 1.0]], dtype=torch.bfloat16)
    out = objective(pred, torch.zeros(1, 2), ObjectiveConfig(loss="mse"))
    assert out.dtype == torch.float32 and out.item() == pytest.approx(0.625)
    with pytest.raises(ValueError, match="smooth_l1, mse or cosine"):
        objective(pred, torch.zeros(1, 2), ObjectiveConfig(loss="l1"))


# ------------------------------------------------------------------ M_out: token selection
def test_select_tokens_with_count_equals_boolean_indexing_in_order() -> None:
    g = torch.Generator().manual_seed(3)
    B, N, C, k = 4, 16, 3, 6
    x = torch.randn(B, N, C, generator=g)
    sel = torch.zeros(B, N, dtype=torch.bool)
    for b in range(B):
        sel[b, torch.randperm(N, generator=g)[:k]] = True
    ref = x[sel]  # row-major: sample by sample, positions in increasing order
    assert torch.equal(select_tokens(x, sel, k), ref)
    assert torch.equal(select_tokens(x, sel, None), ref)
    # Order per sample is the token order: token index encoded in the features.
    idx = torch.arange(N).float().view(1, N, 1).expand(B, N, C)
    picked = select_tokens(idx, sel, k)[:, 0].view(B, k)
    assert torch.equal(picked, torch.stack([torch.nonzero(sel[b]).flatten().float() for b in range(B)]))
    assert (picked.diff(dim=1) > 0).all()


def test_select_tokens_all_selected_is_flatten() -> None:
    x = torch.randn(2, 5, 4)
    assert torch.equal(select_tokens(x, torch.ones(2, 5, dtype=torch.bool), 5), x.flatten(0, 1))


def test_to_unit_scales_uint8_and_keeps_floats() -> None:
    u = torch.tensor([0, 51, 255], dtype=torch.uint8)
    assert torch.allclose(to_unit(u), torch.tensor([0.0, 0.2, 1.0]))
    f = torch.tensor([0.25, 0.5], dtype=torch.float64)
    out = to_unit(f)
    assert out.dtype == torch.float32 and torch.equal(out, f.float())


# ------------------------------------------------------------------ D: decoders
def test_fc_decoder_maps_student_width_to_teacher_width() -> None:
    d = build_decoder(DecoderConfig(kind="fc"), 48, 32, 4)
    assert isinstance(d, torch.nn.Linear) and (d.in_features, d.out_features) == (48, 32)


def test_transformer_decoder_depth_heads_and_widths() -> None:
    d = build_decoder(DecoderConfig(kind="transformer", depth=3, num_heads=0), 48, 20, 4)
    assert isinstance(d, TransformerDecoder) and len(d.blocks) == 3
    assert all(b.attn.num_heads == 4 for b in d.blocks)  # 0 = the student's heads
    assert (d.proj.in_features, d.proj.out_features) == (48, 20)
    d6 = build_decoder(DecoderConfig(kind="transformer", depth=1, num_heads=6), 48, 20, 4)
    assert d6.blocks[0].attn.num_heads == 6
    # Tokens interact (attention), unlike the fc decoder: changing token 0 changes token 1.
    x = torch.randn(1, 3, 48)
    y = x.clone()
    y[0, 0] += torch.randn(48)  # not a constant shift: LayerNorm would remove it
    assert not torch.allclose(d(x)[0, 1], d(y)[0, 1])
