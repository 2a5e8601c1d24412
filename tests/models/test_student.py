"""The student S (paper Eq. 1, M_in inside the encoder): masked patch embeddings are replaced by the
learned mask token before position information is added and before any block, for BEiT (relative
position bias) and ViT (absolute position embedding) students; the wrapped model stays timm's."""

from __future__ import annotations

import pytest
import timm
import torch

from maskdistill.config import StudentConfig
from maskdistill.models.student import MaskedStudent, build_student, student_kwargs

TINY = dict(patch_size=8, embed_dim=32, depth=2, num_heads=2)
FAMILIES = {
    "beit_shared": StudentConfig(arch="beit_base_patch16_224", rel_pos_bias="shared", abs_pos_emb=False, kwargs=TINY),
    "beit_per_block_abs": StudentConfig(
        arch="beit_base_patch16_224", rel_pos_bias="per_block", abs_pos_emb=True, kwargs=TINY
    ),
    "vit_abs": StudentConfig(
        arch="vit_small_patch16_224", rel_pos_bias="none", abs_pos_emb=True, layer_scale=None, kwargs=TINY
    ),
}


def make(name: str) -> MaskedStudent:
    torch.manual_seed(0)
    s = build_student(FAMILIES[name], 32)
    with torch.no_grad():  # make position information matter (timm initialises BEiT's tables to zero)
        for n, p in s.named_parameters():
            if "relative_position_bias_table" in n:
                p.normal_(0, 1)
    return s.eval()


def pos_embed_for_patches(s: MaskedStudent) -> torch.Tensor:
    pe = s.model.pos_embed
    return torch.zeros(1, 16, 32) if pe is None else pe[:, 1:]


@pytest.mark.parametrize("name", list(FAMILIES))
def test_masked_patch_pixels_do_not_reach_the_output(name: str) -> None:
    s = make(name)
    g = torch.Generator().manual_seed(1)
    x = torch.rand(2, 3, 32, 32, generator=g)
    y = x.clone()
    y[:, :, 8:16, 16:24] = torch.rand(2, 3, 8, 8, generator=g) * 5  # patch (1, 2) = token 6
    mask = torch.zeros(2, 16, dtype=torch.bool)
    mask[:, [0, 6, 11]] = True
    with torch.no_grad():
        assert torch.equal(s(x, mask), s(y, mask))
        # Without the mask (or with an empty one) the same pixels change every token (attention).
        d = (s(x) - s(y)).abs()
        assert d[:, 1 + 6].amax() > 1e-2 and d[:, 1 + 3].amax() > 1e-4 and d[:, 0].amax() > 1e-4
        assert torch.equal(s(x), s(x, torch.zeros(2, 16, dtype=torch.bool)))
        # The mask changes the output of unmasked tokens too (they attend to the mask tokens).
        assert (s(x, mask) - s(x))[:, 1 + 3].abs().amax() > 1e-4


@pytest.mark.parametrize("name", list(FAMILIES))
def test_embed_puts_mask_token_plus_position_at_masked_patches(name: str) -> None:
    s = make(name)
    with torch.no_grad():
        s.mask_token.copy_(torch.linspace(-3, 3, 32).view(1, 1, 32))
    x = torch.rand(2, 3, 32, 32)
    mask = torch.zeros(2, 4, 4, dtype=torch.bool)
    mask[0, 1, 2] = mask[0, 3, 0] = mask[1, 0, 0] = True
    with torch.no_grad():
        e = s.embed(x, mask)  # (B, 1 + N, C) before the blocks
        patches = s.model.patch_embed(x)  # (B, N, C)
    pos = pos_embed_for_patches(s).expand(2, -1, -1)
    m = mask.flatten(1)
    assert e.shape == (2, 17, 32)
    assert torch.allclose(e[:, 1:][m], (s.mask_token[0] + pos[m]), atol=1e-6)
    assert torch.allclose(e[:, 1:][~m], (patches + pos)[~m], atol=1e-6)
    cls = s.model.cls_token[0, 0] + (0 if s.model.pos_embed is None else s.model.pos_embed[0, 0])
    assert torch.allclose(e[:, 0], cls.expand(2, -1), atol=1e-6)
    # Position information is added after the replacement: two masked patches differ by their
    # positions only, and are identical where there is no absolute position embedding.
    if s.model.pos_embed is None:
        assert torch.equal(e[0, 1 + 6], e[0, 1 + 12])
    else:
        assert not torch.allclose(e[0, 1 + 6], e[0, 1 + 12])


@pytest.mark.parametrize("name", list(FAMILIES))
def test_mask_token_gets_gradient_only_when_something_is_masked(name: str) -> None:
    s = make(name).train()
    x = torch.rand(2, 3, 32, 32)
    s(x, torch.zeros(2, 16, dtype=torch.bool)).sum().backward()
    assert s.mask_token.grad is None or torch.count_nonzero(s.mask_token.grad) == 0
    s.zero_grad()
    mask = torch.zeros(2, 16, dtype=torch.bool)
    mask[:, 5] = True
    (s(x, mask) ** 2).sum().backward()
    assert torch.count_nonzero(s.mask_token.grad) > 0


@pytest.mark.parametrize("name", list(FAMILIES))
def test_unmasked_student_equals_plain_timm_model_with_final_norm(name: str) -> None:
    """Wrapping, not forking: the state dict loads into timm.create_model(arch, **kwargs), and without a
    mask the student computes timm's tokens followed by the final norm."""
    s = make(name)
    ref = timm.create_model(s.arch, pretrained=False, **s.create_kwargs).eval()
    ref.load_state_dict(s.model.state_dict())
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        tokens = ref.forward_features(x)
        if isinstance(ref.norm, torch.nn.Identity):  # BEiT (global_pool="avg") keeps its final norm as fc_norm
            tokens = ref.fc_norm(tokens)
        out = s(x)
    assert torch.allclose(out, tokens, atol=1e-5)
    # The final norm is applied to the tokens: at init (unit weight, zero bias) they are standardised.
    assert torch.allclose(out.mean(-1), torch.zeros(2, 17), atol=1e-4)
    assert torch.allclose(out.var(-1, unbiased=False), torch.ones(2, 17), atol=1e-2)


def test_beit_options_reach_the_timm_model() -> None:
    shared = make("beit_shared").model
    assert shared.rel_pos_bias is not None and shared.pos_embed is None
    assert all(b.attn.relative_position_bias_table is None for b in shared.blocks)
    per = make("beit_per_block_abs").model
    assert per.rel_pos_bias is None and per.pos_embed is not None
    assert all(b.attn.relative_position_bias_table is not None for b in per.blocks)
    none = build_student(
        StudentConfig(rel_pos_bias="none", abs_pos_emb=True, layer_scale=None, drop_path=0.2, kwargs=TINY), 32
    ).model
    assert none.rel_pos_bias is None and all(b.attn.relative_position_bias_table is None for b in none.blocks)
    assert all(b.gamma_1 is None for b in none.blocks)
    assert none.blocks[-1].drop_path1.drop_prob == pytest.approx(0.2)
    for b in shared.blocks:
        assert torch.equal(b.gamma_1, torch.full((32,), 0.1)) and torch.equal(b.gamma_2, torch.full((32,), 0.1))


def test_vit_student_layer_scale_and_kwargs() -> None:
    cfg = StudentConfig(
        arch="vit_small_patch16_224", rel_pos_bias="none", abs_pos_emb=True, layer_scale=0.25, kwargs=TINY
    )
    kw = student_kwargs(cfg, 32)
    assert kw["init_values"] == 0.25 and kw["num_classes"] == 0 and kw["img_size"] == 32 and kw["patch_size"] == 8
    s = build_student(cfg, 32)
    assert torch.equal(s.model.blocks[0].ls1.gamma, torch.full((32,), 0.25))
    assert (s.grid, s.patch_size, s.embed_dim, s.num_prefix) == ((4, 4), 8, 32, 1)


def test_masked_student_refuses_non_vit_models() -> None:
    with pytest.raises(TypeError, match="VisionTransformer or Beit"):
        MaskedStudent(timm.create_model("test_resnet"))
