"""Capture invariants (one capture module switches fused attention off, hooks the post-softmax
attention and undoes everything): outputs unchanged, attention rows sum to 1, attention equals
softmax(q k^T / sqrt(d) + bias) recomputed from the block's own weights on the captured tokens,
depth + 1 token points ending with ``forward_intermediates``'s last (pre-norm) intermediate, and
nothing left behind -- after a normal run and after an exception -- for timm ViT, BEiT (relative
position bias), DINOv2 with registers, a CLIP tower, EVA (RoPE) and maskdistill students (ViT, and
BEiT on the FlexAttention path)."""

from __future__ import annotations

from typing import Callable, Dict, Tuple

import pytest
import timm
import torch
import torch.nn.functional as F
from timm.layers import apply_rot_embed_cat
from timm.models.beit import Beit
from torch import nn

from maskdistill.config import StudentConfig
from maskdistill.models.capture import capture, find_encoder
from maskdistill.models.flex import use_flex_attention
from maskdistill.models.student import MaskedStudent, build_student

pytestmark = pytest.mark.filterwarnings("ignore:flex_attention called without torch.compile")

TINY = dict(depth=2, embed_dim=48, num_heads=2)
STUDENT = dict(patch_size=8, embed_dim=32, depth=2, num_heads=2)


def _randomise(model: nn.Module) -> nn.Module:
    """timm initialises relative position tables and q/v biases to zero and q/k small (nearly uniform
    attention); make them all matter so that a wrong or missing term shows."""
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "relative_position_bias_table" in n or n.endswith(("q_bias", "v_bias")):
                p.normal_(0, 1)
            elif n.endswith("qkv.weight"):
                p.normal_(0, 0.3)
    return model.eval()


def _timm(name: str, **kw) -> Callable[[], Tuple[nn.Module, int]]:
    def make() -> Tuple[nn.Module, int]:
        torch.manual_seed(0)
        return _randomise(timm.create_model(name, pretrained=False, **kw)), kw.get("img_size", 160)

    return make


def _student(flex: bool = False, **cfg) -> Callable[[], Tuple[nn.Module, int]]:
    def make() -> Tuple[nn.Module, int]:
        torch.manual_seed(0)
        s = _randomise(build_student(StudentConfig(kwargs=STUDENT, **cfg), 32))
        if flex:
            use_flex_attention(s)
        return s, 32

    return make


MODELS: Dict[str, Callable[[], Tuple[nn.Module, int]]] = {
    "vit": _timm("test_vit"),
    "beit_relpos": _timm("beit_base_patch16_224", img_size=48, use_rel_pos_bias=True, **TINY),
    "dinov2_reg4": _timm("vit_small_patch14_reg4_dinov2", img_size=42, **TINY),
    "clip": _timm("vit_base_patch16_clip_224", img_size=48, **TINY),
    "eva_rope": _timm("eva02_tiny_patch14_224", img_size=42, depth=2),
    "student_vit": _student(arch="vit_small_patch16_224", rel_pos_bias="none", abs_pos_emb=True, layer_scale=None),
    "student_beit_flex": _student(flex=True, arch="beit_base_patch16_224", rel_pos_bias="shared", abs_pos_emb=False),
}
PREFIX = {"dinov2_reg4": 5}


def _images(size: int, n: int = 2) -> torch.Tensor:
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(1))


def _state(model: nn.Module) -> list:
    """Everything capture may touch: hooks, fused-attention flags and instance-level forwards."""
    return [
        (
            name,
            dict(m._forward_hooks),
            dict(m._forward_pre_hooks),
            dict(m._forward_hooks_with_kwargs),
            dict(m._forward_pre_hooks_with_kwargs),
            m.__dict__.get("fused_attn"),
            m.__dict__.get("forward"),
        )
        for name, m in model.named_modules()
    ]


@pytest.fixture(scope="module", params=list(MODELS))
def run(request):
    """(name, model, images, output without capture, output with capture, the capture)."""
    model, size = MODELS[request.param]()
    x = _images(size)
    with torch.no_grad():
        plain = model(x)
        with capture(model) as cap:
            captured = model(x)
    return request.param, model, x, plain, captured, cap


def test_outputs_unchanged(run) -> None:
    _, _, _, plain, captured, _ = run
    torch.testing.assert_close(captured, plain, atol=1e-5, rtol=1e-5)


def test_attention_is_a_distribution_per_block(run) -> None:
    name, model, x, _, _, cap = run
    enc = find_encoder(model)
    p = PREFIX.get(name, 1)
    assert cap.num_prefix == p == enc.num_prefix_tokens
    assert cap.grid == tuple(enc.patch_embed.grid_size) and cap.patch_size == enc.patch_embed.patch_size[0]
    T = p + cap.grid[0] * cap.grid[1]
    assert len(cap.attention) == cap.depth == len(enc.blocks)
    for a in cap.attention:
        assert a.shape == (x.shape[0], enc.blocks[0].attn.num_heads, T, T) and a.dtype == torch.float32
        assert (a >= 0).all()
        torch.testing.assert_close(a.sum(-1), torch.ones(a.shape[:-1]), atol=1e-5, rtol=0)
    # Not trivially uniform: the heads attend differently to different keys.
    assert cap.attention[-1].std(-1).mean() > 1e-3


def _rope(enc: nn.Module):
    return enc.rope.get_embed() if getattr(enc, "rope", None) is not None else None


def _recompute(enc: nn.Module, i: int, tokens_in: torch.Tensor) -> torch.Tensor:
    """softmax(q k^T * scale + relative position bias) from block i's own weights (EVA: q and k
    of the patch tokens rotated by RoPE first)."""
    blk = enc.blocks[i]
    attn = blk.attn
    h = blk.norm1(tokens_in)  # (B, T, C)
    B, T, _ = h.shape
    bias = None if getattr(attn, "q_bias", None) is None else torch.cat((attn.q_bias, attn.k_bias, attn.v_bias))
    qkv = F.linear(h, attn.qkv.weight, attn.qkv.bias if bias is None else bias)
    q, k, _ = qkv.reshape(B, T, 3, attn.num_heads, -1).permute(2, 0, 3, 1, 4).unbind(0)  # (B, H, T, D)
    if hasattr(attn, "q_norm"):
        q, k = attn.q_norm(q), attn.k_norm(k)
    rope, p = _rope(enc), enc.num_prefix_tokens
    if rope is not None:
        q = torch.cat([q[:, :, :p], apply_rot_embed_cat(q[:, :, p:], rope)], 2)
        k = torch.cat([k[:, :, :p], apply_rot_embed_cat(k[:, :, p:], rope)], 2)
    logits = (q @ k.transpose(-2, -1)) * q.shape[-1] ** -0.5  # (B, H, T, T)
    if isinstance(enc, Beit):
        if attn.relative_position_bias_table is not None:
            logits = logits + attn._get_rel_pos_bias()
        if enc.rel_pos_bias is not None:
            logits = logits + enc.rel_pos_bias()
    return logits.softmax(-1)


def test_attention_recomputed_from_q_and_k(run) -> None:
    name, model, _, _, _, cap = run
    enc = find_encoder(model)
    # The position terms must be present, or the check would not see them missing.
    if isinstance(enc, Beit):
        assert any(b.attn.relative_position_bias_table is not None for b in enc.blocks) or enc.rel_pos_bias is not None
    assert (_rope(enc) is not None) == (name == "eva_rope")
    with torch.no_grad():
        for i, a in enumerate(cap.attention):
            torch.testing.assert_close(a, _recompute(enc, i, cap.tokens[i]), atol=1e-5, rtol=1e-4)


def test_tokens_are_the_residual_stream(run) -> None:
    name, model, x, plain, _, cap = run
    enc = find_encoder(model)
    assert len(cap.tokens) == len(enc.blocks) + 1
    with torch.no_grad():
        if isinstance(model, MaskedStudent):
            torch.testing.assert_close(cap.tokens[0], model.embed(x, None))
            norm = model.model.fc_norm if isinstance(model.model.norm, nn.Identity) else model.model.norm
            torch.testing.assert_close(norm(cap.tokens[-1]), plain, atol=1e-5, rtol=1e-5)
            return
        last = model.forward_intermediates(x, norm=False, output_fmt="NLC", intermediates_only=True)[-1]
        torch.testing.assert_close(cap.tokens[-1][:, cap.num_prefix :], last, atol=1e-5, rtol=1e-5)
        if isinstance(enc, Beit):
            return
        # ViT / EVA: patch + position embedding (+ CLIP's norm_pre), then block by block.
        emb = enc._pos_embed(enc.patch_embed(x))
        emb = emb[0] if isinstance(emb, tuple) else emb  # EVA also returns its RoPE table
        torch.testing.assert_close(cap.tokens[0], enc.norm_pre(emb))
        kw = {} if _rope(enc) is None else {"rope": _rope(enc)}
        for i, blk in enumerate(enc.blocks):
            torch.testing.assert_close(cap.tokens[i + 1], blk(cap.tokens[i], **kw), atol=1e-5, rtol=1e-5)


def test_nothing_left_behind_after_a_run(run) -> None:
    name, _, _, _, _, _ = run
    model, size = MODELS[name]()
    before = _state(model)
    with torch.no_grad(), capture(model):
        assert all(not m.attn.fused_attn for m in find_encoder(model).blocks)
        model(_images(size, 1))
    assert _state(model) == before


def test_nothing_left_behind_after_an_exception(run) -> None:
    name, _, _, _, _, _ = run
    model, size = MODELS[name]()
    before = _state(model)
    with pytest.raises(KeyError, match="inside the with"), torch.no_grad(), capture(model) as cap:
        model(_images(size, 1))
        assert len(cap.attention) == cap.depth
        raise KeyError("inside the with")
    assert _state(model) == before
    if name == "student_beit_flex":  # the FlexAttention forward is back
        assert all("forward" in b.attn.__dict__ for b in model.model.blocks)


# --------------------------------------------------------------------------------- behaviour and errors
def _tiny_vit(**kw) -> nn.Module:
    torch.manual_seed(0)
    return timm.models.vision_transformer.VisionTransformer(
        img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2, num_classes=3, **kw
    ).eval()


def test_each_forward_replaces_the_record_and_callbacks_stream() -> None:
    model = _tiny_vit()
    x = _images(32)
    with torch.no_grad(), capture(model) as cap:
        model(x)
        first = [a.clone() for a in cap.attention]
        model(x.flip(-1))
        assert len(cap.attention) == 2 and len(cap.tokens) == 3
        assert not torch.allclose(first[0], cap.attention[0])
        cap.clear()
        assert cap.attention == [] and cap.tokens == []
    got = []
    with (
        torch.no_grad(),
        capture(
            model, tokens=False, dtype=torch.float64, on_attention=lambda i, a: got.append((i, a.dtype, a.shape))
        ) as cap,
    ):
        model(x)
    assert cap.attention == [] and cap.tokens == []
    assert got == [(i, torch.float64, (2, 2, 17, 17)) for i in range(2)]


def test_tokens_only_keeps_fused_attention() -> None:
    model = _tiny_vit()
    with torch.no_grad(), capture(model, attention=False) as cap:
        assert all(b.attn.fused_attn for b in model.blocks)
        model(_images(32))
    assert cap.attention == [] and len(cap.tokens) == 3


def test_a_model_without_encoder_raises_naming_it() -> None:
    with pytest.raises(TypeError, match="Sequential"):
        with capture(nn.Sequential(nn.Linear(2, 2))):
            pass


def test_several_encoders_raise() -> None:
    with pytest.raises(ValueError, match="several encoders"):
        with capture(nn.ModuleDict({"a": _tiny_vit(), "b": _tiny_vit()})):
            pass


class OddAttention(nn.Module):
    def __init__(self, dim: int = 32) -> None:
        super().__init__()
        self.qkv = nn.Linear(dim, 3 * dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


@pytest.mark.parametrize("swap", ["custom", "timm_diff"])
def test_unknown_attention_class_raises_naming_it(swap: str) -> None:
    if swap == "custom":
        model, cls = _tiny_vit(), "OddAttention"
        model.blocks[1].attn = OddAttention()
    else:
        model, cls = _tiny_vit(attn_layer="diff"), "DiffAttention"
    before = _state(model)
    with pytest.raises(TypeError, match=cls):
        with capture(model):
            pass
    assert _state(model) == before


def test_unknown_forward_override_raises_and_bypass_is_caught() -> None:
    model = _tiny_vit()
    model.blocks[0].attn.forward = lambda x, **kw: x
    with pytest.raises(TypeError, match="forward replaced"):
        with capture(model):
            pass
    model = _tiny_vit()
    before = _state(model)
    with pytest.raises(RuntimeError, match="without its unfused softmax"), torch.no_grad(), capture(model):
        model.blocks[1].attn.fused_attn = True  # someone re-enables the fused kernel mid-capture
        model(_images(32))
    assert _state(model) == before
