"""The teacher T (paper Sec. 2): block choice, prefix tokens, teachers without a CLS token, the
pixel target of classical MIM (Fig. 1c, MAE's normalised pixels) and grid resampling."""

from __future__ import annotations

from functools import partial

import pytest
import torch
import torch.nn.functional as F

from helpers import models
from maskdistill.config import TeacherConfig
from maskdistill.distill.parts import Whitening
from maskdistill.models.teacher import PixelTeacher, Teacher, build_teacher, resample_tokens, teacher_grid

MEAN, STD = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)


# ViT-S/16's config shrunk to 32 px, 8 px patches (a 4 x 4 grid), width 32, three blocks, no head.
tiny_vit = partial(models.tiny_vit, "backbone32")


def reference(bb: torch.nn.Module, x: torch.Tensor, idx: int, norm: bool) -> torch.Tensor:
    """Hand-run the backbone block by block; (B, p + N, C)."""
    h = bb.norm_pre(
        bb._pos_embed(bb.patch_embed((x - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)))
    )
    for blk in bb.blocks[: idx + 1]:
        h = blk(h)
    return bb.norm(h) if norm else h


@pytest.mark.parametrize("layer, final_norm, prefix", [(-1, True, False), (0, False, False), (1, True, True)])
def test_teacher_tokens_are_the_chosen_block(layer: int, final_norm: bool, prefix: bool) -> None:
    bb = tiny_vit()
    t = Teacher(bb, MEAN, STD, layer=layer, final_norm=final_norm, prefix_tokens=prefix)
    x = torch.rand(2, 3, 32, 32)
    ref = reference(bb, x, layer % 3, final_norm)
    out = t(x)
    assert torch.allclose(out, ref if prefix else ref[:, 1:], atol=1e-5)
    assert t.dim == 32 and t.grid == (4, 4) and t.num_prefix == 1


def test_teacher_projection_applies_the_head_to_every_token() -> None:
    bb = tiny_vit()
    bb.reset_classifier(12)  # stands in for a CLIP tower's projection
    t = Teacher(bb, MEAN, STD, projection=True)
    x = torch.rand(2, 3, 32, 32)
    assert t.dim == 12
    assert torch.allclose(t(x), bb.head(reference(bb, x, 2, True)[:, 1:]), atol=1e-5)
    with pytest.raises(ValueError, match="projection"):
        Teacher(tiny_vit(), MEAN, STD, projection=True)  # head is Identity: no projection to apply


@pytest.mark.parametrize("batch", [2, 3])
def test_teacher_without_prefix_tokens(batch: int) -> None:
    # SigLIP-style towers have no CLS token; timm then returns bare tensors, not (patches, prefix).
    bb = tiny_vit(class_token=False, global_pool="avg")
    assert bb.num_prefix_tokens == 0
    x = torch.rand(batch, 3, 32, 32)
    out = Teacher(bb, MEAN, STD)(x)
    assert out.shape == (batch, 16, 32)
    assert torch.allclose(out, reference(bb, x, 2, True), atol=1e-5)
    assert torch.allclose(Teacher(bb, MEAN, STD, prefix_tokens=True)(x), out)


def test_build_teacher_uses_pretrained_cfg_normalisation_and_img_size() -> None:
    t = build_teacher(TeacherConfig(spec="timm:test_vit"), 64, 16, pretrained=False)
    dc = t.backbone.pretrained_cfg
    assert torch.allclose(t.mean.flatten(), torch.tensor(dc["mean"])) and torch.allclose(
        t.std.flatten(), torch.tensor(dc["std"])
    )
    assert t.grid == (4, 4) and teacher_grid(t, 64, 16) == (4, 4)
    assert not any(p.requires_grad for p in t.parameters()) and not t.training


# ------------------------------------------------------------------ pixels (classical MIM)
def test_pixel_teacher_is_the_patchified_normalised_image() -> None:
    p, B, H = 8, 2, 32
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    t = PixelTeacher(p, 3, mean, std)
    x = torch.rand(B, 3, H, H, generator=torch.Generator().manual_seed(0))
    xn = (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    # F.unfold gives (B, C*p*p, L) ordered (c, p1, p2); the target is ordered (p1, p2, c) like MAE.
    u = F.unfold(xn, kernel_size=p, stride=p).view(B, 3, p * p, -1).permute(0, 3, 2, 1).reshape(B, -1, p * p * 3)
    out = t(x)
    assert out.shape == (B, 16, 192) and t.dim == 192
    assert torch.allclose(out, u, atol=1e-6)
    # Token n is patch (row n // 4, col n % 4); element 0 is pixel (0, 0) channel 0 of that patch.
    assert torch.allclose(out[1, 6, :3], xn[1, :, 8, 16])
    assert torch.allclose(out[1, 6, 3:6], xn[1, :, 8, 17])
    assert not t(x.requires_grad_()).requires_grad
    assert teacher_grid(t, H, p) == (4, 4)


def test_pixel_target_with_layernorm_whitening_is_mae_normalised_pixels() -> None:
    t = PixelTeacher(8, 3, (0.5,) * 3, (0.25,) * 3)
    x = torch.rand(2, 3, 32, 32) * torch.linspace(0.1, 1, 32)  # patches of very different contrast
    w = Whitening("layernorm")(t(x))
    assert torch.allclose(w.mean(-1), torch.zeros(2, 16), atol=1e-5)
    assert torch.allclose(w.var(-1, unbiased=False), torch.ones(2, 16), atol=1e-3)
    raw = t(x)
    mae = (raw - raw.mean(-1, keepdim=True)) / (raw.var(-1, unbiased=False, keepdim=True) + 1e-6).sqrt()
    assert torch.allclose(w, mae, atol=1e-4)


# ------------------------------------------------------------------ resampling
def test_resample_identity_when_grids_match() -> None:
    x = torch.randn(2, 1 + 16, 8)
    assert torch.equal(resample_tokens(x, (4, 4), (4, 4), num_prefix=1), x)


def test_resample_constant_map_stays_constant() -> None:
    c = torch.randn(1, 1, 5)
    x = c.expand(2, 256, 5).clone()
    y = resample_tokens(x, (16, 16), (14, 14))
    assert y.shape == (2, 196, 5)
    assert torch.allclose(y, c.expand(2, 196, 5), atol=1e-5)


def test_resample_linear_ramp_stays_monotone_and_prefix_is_kept() -> None:
    hs = ws = 16
    col = torch.arange(ws).float().repeat(hs)  # ramp along x: value = column index
    row = torch.arange(hs).float().repeat_interleave(ws)  # ramp along y
    patches = torch.stack([col, row, -2 * col], -1).unsqueeze(0)  # (1, 256, 3)
    prefix = torch.tensor([[[9.0, -9.0, 3.0], [1.0, 2.0, 3.0]]])
    y = resample_tokens(torch.cat([prefix, patches], 1), (hs, ws), (14, 14), num_prefix=2)
    assert y.shape == (1, 2 + 196, 3)
    assert torch.equal(y[:, :2], prefix)
    g = y[0, 2:].view(14, 14, 3)
    assert (g[:, 1:, 0] - g[:, :-1, 0] > 0).all() and (g[:, 1:, 2] - g[:, :-1, 2] < 0).all()  # along x
    assert (g[1:, :, 1] - g[:-1, :, 1] > 0).all()  # along y
    assert torch.allclose(g[:, :, 0], g[:1, :, 0].expand(14, 14), atol=1e-5)  # x-ramp constant along y
    assert g[..., 0].min() >= 0 and g[..., 0].max() <= 15  # no overshoot
    # Upsampling (patch 16 teacher for a patch 14 student) keeps the direction too.
    up = resample_tokens(patches, (16, 16), (18, 18)).view(18, 18, 3)
    assert (up[:, 1:, 0] - up[:, :-1, 0] > 0).all()


def test_resample_keeps_dtype() -> None:
    x = torch.randn(1, 64, 4, dtype=torch.bfloat16)
    assert resample_tokens(x, (8, 8), (4, 4)).dtype == torch.bfloat16
