"""MaskedDistiller (paper Eq. 1): frozen teacher, masked-only loss M_out, the composition
L = M_out(R(N(T(I)), D(S(M_in(I))))) against a hand-written reference, and teacher/student grids that
differ."""

from __future__ import annotations

import logging
from typing import Optional

import pytest
import timm
import torch

from maskdistill.config import DecoderConfig, ObjectiveConfig, StudentConfig, load_config
from maskdistill.distill.distiller import MaskedDistiller
from maskdistill.distill.parts import Whitening, build_decoder
from maskdistill.models.student import MaskedStudent, build_student
from maskdistill.models.teacher import Teacher, resample_tokens
from maskdistill.train.optim import build_optimizer

IMG = 32
T_MEAN, T_STD = (0.48, 0.46, 0.41), (0.27, 0.26, 0.28)  # CLIP-like: differs from the student's
S_MEAN, S_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def tiny_teacher(patch: int = 8, dim: int = 32, prefix_tokens: bool = False, **kw) -> Teacher:
    bb = timm.create_model(
        "vit_small_patch16_224",
        img_size=IMG,
        patch_size=patch,
        embed_dim=dim,
        depth=2,
        num_heads=2,
        num_classes=0,
        **kw,
    )
    return Teacher(bb, T_MEAN, T_STD, name="tiny-vit", prefix_tokens=prefix_tokens)


def tiny_student(arch: str = "beit_base_patch16_224") -> MaskedStudent:
    beit = arch.startswith("beit")
    cfg = StudentConfig(
        arch=arch,
        rel_pos_bias="shared" if beit else "none",
        abs_pos_emb=not beit,
        kwargs=dict(patch_size=8, embed_dim=48, depth=2, num_heads=2),
    )
    return build_student(cfg, IMG)


def make_distiller(
    loss_on: str = "masked",
    whitening: str = "layernorm",
    loss: str = "smooth_l1",
    decoder: str = "fc",
    num_masked: Optional[int] = 6,
    teacher: Optional[Teacher] = None,
    student_arch: str = "beit_base_patch16_224",
    seed: int = 0,
) -> MaskedDistiller:
    torch.manual_seed(seed)
    t = teacher or tiny_teacher()
    s = tiny_student(student_arch)
    d = build_decoder(DecoderConfig(kind=decoder, depth=1), s.embed_dim, t.dim, 2)
    return MaskedDistiller(
        t,
        s,
        d,
        Whitening(whitening),
        ObjectiveConfig(loss=loss, beta=2.0),
        loss_on,
        S_MEAN,
        S_STD,
        num_masked=num_masked,
    )


def exact_masks(B: int, N: int, k: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    m = torch.zeros(B, N, dtype=torch.bool)
    for b in range(B):
        m[b, torch.randperm(N, generator=g)[:k]] = True
    return m


def images(B: int = 3, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, (B, 3, IMG, IMG), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


# ------------------------------------------------------------------ T is frozen
def test_teacher_frozen_through_training_steps() -> None:
    # Dropout in the teacher: if it were in train mode, two forwards would differ.
    teacher = tiny_teacher(proj_drop_rate=0.5, drop_path_rate=0.5)
    dist = make_distiller(teacher=teacher)
    before = {k: v.clone() for k, v in dist.teacher.state_dict().items()}
    s_before = {k: v.clone() for k, v in dist.student.state_dict().items()}
    dist.train()
    assert not dist.teacher.training and not any(m.training for m in dist.teacher.modules())
    assert dist.student.training
    dist.teacher.train(True)  # asked directly: still eval
    assert not dist.teacher.training and not any(m.training for m in dist.teacher.modules())
    assert not any(p.requires_grad for p in dist.teacher.parameters())

    opt = torch.optim.AdamW([p for p in dist.parameters() if p.requires_grad], lr=1e-2, weight_decay=0.05)
    teacher_ids = {id(p) for p in dist.teacher.parameters()}
    assert not teacher_ids & {id(p) for g in opt.param_groups for p in g["params"]}
    # The project's optimizer builder leaves the teacher out too.
    assert not teacher_ids & {
        id(p) for g in build_optimizer(dist, load_config().optim).param_groups for p in g["params"]
    }
    x, mask = images(), exact_masks(3, 16, 6)
    for _ in range(3):
        loss = dist(x, mask)["loss"]
        opt.zero_grad()
        loss.backward()
        assert all(p.grad is None for p in dist.teacher.parameters())
        opt.step()
        dist.train()
    after = dist.teacher.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before), "teacher weights changed"
    # ... while the student did learn (so the optimizer really ran).
    assert any(not torch.equal(s_before[k], v) for k, v in dist.student.state_dict().items())
    assert not dist.teacher.training

    # No autograd graph from the teacher, even for an input that requires grad.
    xf = torch.rand(2, 3, IMG, IMG, requires_grad=True)
    t1, t2 = dist.teacher(xf), dist.teacher(xf)
    assert not t1.requires_grad and t1.grad_fn is None
    assert torch.equal(t1, t2)  # dropout / drop path off
    tg = dist.targets(xf)
    assert not tg.requires_grad and tg.grad_fn is None


def test_teacher_uses_its_own_normalisation_on_the_same_crop() -> None:
    dist = make_distiller()
    x = torch.rand(2, 3, IMG, IMG)
    bb = dist.teacher.backbone
    ref = bb.forward_intermediates(
        (x - torch.tensor(T_MEAN).view(1, 3, 1, 1)) / torch.tensor(T_STD).view(1, 3, 1, 1),
        indices=[1],
        norm=True,
        output_fmt="NLC",
        intermediates_only=True,
    )[0]
    assert torch.allclose(dist.teacher(x), ref, atol=1e-6)
    assert torch.allclose(dist.targets(x), torch.nn.functional.layer_norm(ref, (ref.shape[-1],), eps=1e-6), atol=1e-5)


# ------------------------------------------------------------------ the composition, by hand
@pytest.mark.parametrize("loss", ["smooth_l1", "mse", "cosine"])
def test_loss_equals_hand_written_eq1(loss: str) -> None:
    dist = make_distiller(loss=loss).eval()
    raw, mask = images(), exact_masks(3, 16, 6, seed=1)
    x = raw.float() / 255
    t = dist.teacher(x)  # (B, N, Ct), teacher normalisation inside
    t = torch.nn.functional.layer_norm(t, t.shape[-1:], eps=1e-6)
    s = dist.student((x - torch.tensor(S_MEAN).view(1, 3, 1, 1)) / torch.tensor(S_STD).view(1, 3, 1, 1), mask)
    pred = dist.decoder(s[:, 1:][mask])
    tgt = t[mask]
    ref = {
        "smooth_l1": lambda: torch.nn.functional.smooth_l1_loss(pred, tgt, beta=2.0),
        "mse": lambda: ((pred - tgt) ** 2).mean(),
        "cosine": lambda: -torch.nn.functional.cosine_similarity(pred, tgt, dim=-1).mean(),
    }[loss]()
    got = dist(raw, mask)["loss"]
    assert got.item() == pytest.approx(ref.item(), rel=1e-5, abs=1e-6)
    # The static-shape gather (known count) and boolean indexing give the same loss.
    dist.num_masked = None
    assert dist(raw, mask)["loss"].item() == pytest.approx(got.item(), rel=1e-6, abs=1e-7)


# ------------------------------------------------------------------ M_out: masked-only loss
def perturb_teacher(monkeypatch: pytest.MonkeyPatch, dist: MaskedDistiller, where: torch.Tensor) -> None:
    """Add large noise to the teacher's patch tokens where ``where`` (B, N) is True."""
    orig = dist.teacher.forward
    p = dist.t_prefix

    def noisy(x: torch.Tensor) -> torch.Tensor:
        t = orig(x)
        noise = torch.randn(t[:, p:].shape, generator=torch.Generator().manual_seed(7)) * 10
        t = t.clone()
        t[:, p:] += noise * where.unsqueeze(-1)
        return t

    monkeypatch.setattr(dist.teacher, "forward", noisy)


@pytest.mark.parametrize(
    "whitening, loss, decoder, prefix",
    [
        ("layernorm", "smooth_l1", "fc", False),
        ("none", "mse", "transformer", False),
        ("layernorm", "cosine", "fc", True),
    ],
)
def test_masked_loss_ignores_teacher_at_unmasked_positions(
    monkeypatch: pytest.MonkeyPatch, whitening: str, loss: str, decoder: str, prefix: bool
) -> None:
    teacher = tiny_teacher(prefix_tokens=prefix) if prefix else None
    x, mask = images(), exact_masks(3, 16, 6, seed=2)
    with torch.no_grad():
        dist = make_distiller("masked", whitening, loss, decoder, teacher=teacher).eval()
        assert dist.t_prefix == (1 if prefix else 0)
        clean = dist(x, mask)["loss"]
        with monkeypatch.context() as mp:
            perturb_teacher(mp, dist, ~mask)
            assert (
                dist.teacher(x.float() / 255)[:, dist.t_prefix :]
                - dist.teacher.backbone.forward_intermediates(
                    (x.float() / 255 - dist.teacher.mean) / dist.teacher.std,
                    indices=[1],
                    norm=True,
                    output_fmt="NLC",
                    intermediates_only=True,
                )[0]
            ).abs().amax() > 1.0  # the perturbation is real
            unmasked_noise = dist(x, mask)["loss"]
        with monkeypatch.context() as mp:
            perturb_teacher(mp, dist, mask & (torch.arange(16) == torch.nonzero(mask[0])[0, 0]))  # one masked token
            masked_noise = dist(x, mask)["loss"]
    assert (unmasked_noise - clean).abs().item() <= 1e-7
    assert (masked_noise - clean).abs().item() > 1e-4


def test_loss_on_all_depends_on_unmasked_teacher_tokens(monkeypatch: pytest.MonkeyPatch) -> None:
    x, mask = images(), exact_masks(3, 16, 6, seed=2)
    with torch.no_grad():
        dist = make_distiller("all").eval()
        clean = dist(x, mask)["loss"]
        perturb_teacher(monkeypatch, dist, ~mask)
        noisy = dist(x, mask)["loss"]
    assert (noisy - clean).abs().item() > 1e-3


def test_masked_loss_with_nothing_masked_is_refused() -> None:
    with pytest.raises(ValueError, match="loss_on=all"):
        make_distiller("masked", num_masked=0)
    make_distiller("all", num_masked=0)  # plain feature distillation (FD) is fine


def test_plain_feature_distillation_via_config_gives_a_finite_loss() -> None:
    from maskdistill.train.pretrain import build_distiller, mask_generator

    tiny = [
        "student.kwargs={patch_size: 8, embed_dim: 32, depth: 1, num_heads: 2}",
        "data.img_size=32",
        "teacher.spec=pixels",
        "mask.kind=none",
    ]
    cfg = load_config("demo", tiny + ["mask.loss_on=all"])
    dist = build_distiller(cfg, pretrained_teacher=False)
    mask = torch.as_tensor(mask_generator(cfg, dist.student.grid)(__import__("numpy").random.default_rng(0)))
    assert not mask.any()
    loss = dist(images(2), mask.flatten().expand(2, -1))["loss"]
    assert torch.isfinite(loss) and loss.item() > 0
    with pytest.raises(ValueError, match="mask.loss_on=all"):
        build_distiller(load_config("demo", tiny), pretrained_teacher=False)


# ------------------------------------------------------------------ different grids
def test_teacher_on_another_grid_is_resampled_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    teacher = tiny_teacher(patch=4)  # 8x8 tokens; the student has 4x4
    with caplog.at_level(logging.WARNING, logger="maskdistill"):
        dist = make_distiller(teacher=teacher)
    msgs = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert any("resampled" in m and "(8, 8)" in m and "(4, 4)" in m for m in msgs), msgs
    x, mask = images(), exact_masks(3, 16, 6)
    xf = x.float() / 255
    expected = torch.nn.functional.layer_norm(resample_tokens(dist.teacher(xf), (8, 8), (4, 4)), (32,), eps=1e-6)
    tgt = dist.targets(xf)
    assert tgt.shape == (3, 16, 32) and torch.allclose(tgt, expected, atol=1e-6)
    loss = dist(x, mask)["loss"]
    assert torch.isfinite(loss)
    loss.backward()
    assert dist.student.mask_token.grad is not None and dist.student.mask_token.grad.abs().sum() > 0


def test_same_grid_logs_no_resampling_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="maskdistill"):
        make_distiller()
    assert not [r for r in caplog.records if "resampled" in r.getMessage()]
