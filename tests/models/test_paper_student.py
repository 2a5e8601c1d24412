"""Acceptance item 2: the paper's presets (Table 1, "BEiT v2/Base" column) build exactly the paper's
ViT-B/16 student -- parameter count from the architecture's formula, shared relative position bias,
layer scale 0.1, no absolute position embedding -- and its optimizer and schedule, without a download."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

import maskdistill.train.pretrain as pretrain_mod
from maskdistill.cli import main as cli_main
from maskdistill.config import load_config
from maskdistill.distill.distiller import MaskedDistiller
from maskdistill.train.job import plan_steps
from maskdistill.train.optim import build_optimizer, cosine_lr

REPO = Path(__file__).resolve().parents[2]
PRESETS = {
    "clip": "timm:vit_base_patch16_clip_224.openai",
    "dino": "timm:vit_base_patch16_224.dino",
    "deit": "timm:deit_base_patch16_224.fb_in1k",
}
IMAGENET_TRAIN = 1_281_167

# ViT-B/16 at 224 px
D, P, C, L, H, MLP, G = 768, 16, 3, 12, 12, 3072, 224 // 16


def beit_b16_student_params() -> int:
    """Parameters of the BEiT-layout ViT-B/16 student with one shared relative position bias, written
    out from the architecture (BEiT v2 / timm ``beit_base_patch16_224`` with num_classes=0)."""
    patch_embed = C * P * P * D + D  # conv 16x16 stride 16 + bias
    cls_token = D
    block = (
        2 * D  # norm1
        + 3 * D * D
        + 2 * D  # qkv weight (no bias) + q_bias + v_bias (BEiT has no k bias)
        + D * D
        + D  # attention output projection
        + 2 * D  # norm2
        + D * MLP
        + MLP  # fc1
        + MLP * D
        + D  # fc2
        + 2 * D
    )  # layer-scale gammas 1 and 2
    rel_pos_table = ((2 * G - 1) ** 2 + 3) * H  # one table, shared by all blocks (its index is a buffer)
    final_norm = 2 * D
    mask_token = D
    return patch_embed + cls_token + L * block + rel_pos_table + final_norm + mask_token


def preset_path(name: str) -> Path:
    return REPO / "configs" / "pretrain" / f"vit_b16_{name}.yaml"


@pytest.mark.parametrize("name", list(PRESETS))
def test_presets_hold_table1_beit_v2_base_recipe(name: str) -> None:
    cfg = load_config(preset_path(name), ["data.path=/some/dir"])
    assert cfg.data.path == "/some/dir"
    assert cfg.teacher.spec == PRESETS[name]
    assert (cfg.train.epochs, cfg.train.batch_size, cfg.train.accum_steps) == (300, 2048, 1)
    o = cfg.optim
    assert tuple(o.betas) == (0.98, 0.999)
    assert (o.lr, o.min_lr, o.weight_decay, o.clip_grad, o.warmup_epochs) == (1.5e-3, 1e-5, 0.05, 3.0, 10)
    s = cfg.student
    assert (s.arch, s.rel_pos_bias, s.abs_pos_emb, s.layer_scale) == ("beit_base_patch16_224", "shared", False, 0.1)
    assert s.kwargs == {} and s.drop_path == 0.0
    d = cfg.data
    assert (d.img_size, d.min_scale, d.color_jitter, d.hflip) == (224, 0.2, 0.4, 0.5)
    m = cfg.mask
    assert (m.kind, m.num_masked, m.min_block, m.loss_on) == ("blockwise", 75, 16, "masked")
    assert (cfg.decoder.kind, cfg.objective.whitening, cfg.objective.loss) == ("fc", "layernorm", "smooth_l1")


@pytest.fixture(scope="module")
def paper() -> tuple:
    cfg = load_config(preset_path("clip"), ["data.path=/some/dir"])
    torch.manual_seed(0)
    return cfg, pretrain_mod.build_distiller(cfg, pretrained_teacher=False)


def test_paper_student_parameter_count(paper: tuple) -> None:
    cfg, dist = paper
    s = dist.student
    n_timm = sum(p.numel() for p in s.model.parameters())
    n_student = sum(p.numel() for p in s.parameters())
    expected = beit_b16_student_params()
    print(f"paper student: {n_student:,} parameters (formula {expected:,}; timm model {n_timm:,} + mask token)")
    assert n_student == expected == 85_666_128
    assert n_timm == expected - D
    assert not any("relative_position_index" in n for n, _ in s.named_parameters())
    assert isinstance(s.model.head, torch.nn.Identity)  # no classifier in pre-training


def test_paper_student_architecture(paper: tuple) -> None:
    _, dist = paper
    m = dist.student.model
    assert (dist.student.grid, dist.student.patch_size, dist.student.embed_dim) == ((G, G), P, D)
    assert len(m.blocks) == L and all(b.attn.num_heads == H for b in m.blocks)
    assert m.pos_embed is None  # no absolute position embedding
    assert m.rel_pos_bias is not None  # one shared relative position bias ...
    assert tuple(m.rel_pos_bias.relative_position_bias_table.shape) == ((2 * G - 1) ** 2 + 3, H)
    assert all(b.attn.relative_position_bias_table is None for b in m.blocks)  # ... and no per-block tables
    for b in m.blocks:
        assert torch.equal(b.gamma_1, torch.full((D,), 0.1)) and torch.equal(b.gamma_2, torch.full((D,), 0.1))
        assert b.attn.q_bias is not None and b.attn.v_bias is not None and b.attn.qkv.bias is None
        assert isinstance(b.drop_path1, torch.nn.Identity)
    assert dist.student.mask_token.shape == (1, 1, D)
    # fc decoder from the student's width to the CLIP ViT-B/16 teacher's width (before projection).
    assert isinstance(dist.decoder, torch.nn.Linear) and (dist.decoder.in_features, dist.decoder.out_features) == (D, D)
    assert dist.teacher.dim == D and dist.teacher.grid == (G, G) and dist.num_masked == 75
    assert not any(p.requires_grad for p in dist.teacher.parameters())


def test_paper_optimizer_settings(paper: tuple) -> None:
    cfg, dist = paper
    opt = build_optimizer(dist, cfg.optim)
    assert isinstance(opt, torch.optim.AdamW)
    assert opt.defaults["betas"] == (0.98, 0.999) and opt.defaults["lr"] == 1.5e-3 and opt.defaults["eps"] == 1e-8
    by_id = {id(p): g["weight_decay"] for g in opt.param_groups for p in g["params"]}
    assert all(g["lr"] == 1.5e-3 for g in opt.param_groups)
    # Weight decay on the weight matrices of linear and conv layers only (written out by name).
    matrices = ("qkv.weight", "attn.proj.weight", "mlp.fc1.weight", "mlp.fc2.weight", "patch_embed.proj.weight")
    seen = 0
    for name, p in dist.named_parameters():
        if name.startswith("teacher."):
            assert id(p) not in by_id, f"teacher parameter {name} is in the optimizer"
            continue
        expected = 0.05 if (name.endswith(matrices) or name == "decoder.weight") else 0.0
        assert by_id[id(p)] == expected, f"{name}: weight decay {by_id[id(p)]}, expected {expected}"
        seen += 1
    assert seen == len(by_id)
    named = dict(dist.named_parameters())
    for name in (
        "student.mask_token",
        "student.model.cls_token",
        "student.model.rel_pos_bias.relative_position_bias_table",
        "student.model.blocks.0.attn.q_bias",
        "student.model.blocks.0.gamma_1",
        "student.model.fc_norm.weight",
        "student.model.blocks.0.norm1.weight",
        "decoder.bias",
    ):
        assert by_id[id(named[name])] == 0.0, name
    decayed = sum(p.numel() for g in opt.param_groups if g["weight_decay"] > 0 for p in g["params"])
    assert decayed == L * (3 * D * D + D * D + 2 * D * MLP) + C * P * P * D + D * D


def test_paper_schedule_matches_cosine_formula() -> None:
    cfg = load_config(preset_path("clip"), ["data.path=/some/dir"])
    spe, total, warmup, stop = plan_steps(IMAGENET_TRAIN, cfg.train, cfg.optim)
    assert (spe, total, warmup, stop) == (625, 300 * 625, 10 * 625, 300 * 625)
    peak, floor = 1.5e-3, 1e-5

    def formula(step: int) -> float:
        if step < warmup:
            return peak * (step + 1) / warmup
        t = (step - warmup) / (total - warmup)
        return floor + (peak - floor) * (1 + math.cos(math.pi * t)) / 2

    lr = lambda s: cosine_lr(s, total, warmup, peak, floor)  # noqa: E731
    assert lr(0) == pytest.approx(peak / 6250, rel=1e-12)
    assert lr(warmup - 1) == pytest.approx(peak, rel=1e-12)  # end of warm-up
    assert lr(warmup) == pytest.approx(peak, rel=1e-12)
    assert lr((warmup + total) // 2) == pytest.approx((peak + floor) / 2, rel=1e-9)
    assert lr(total) == pytest.approx(floor, rel=1e-12)  # end
    for s in (0, 1, 3000, warmup - 1, warmup, warmup + 1, 50_000, 120_000, total - 1, total):
        assert lr(s) == pytest.approx(formula(s), rel=1e-12), s
    assert all(lr(s) >= lr(s + 1000) for s in range(warmup, total - 1000, 9000))


def test_dry_run_reports_the_paper_student(
    paper: tuple, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    _, dist = paper
    built = []

    def reuse(cfg, pretrained_teacher: bool = True) -> MaskedDistiller:
        assert pretrained_teacher is False  # --dry-run must not download the teacher
        built.append(cfg)
        return dist

    monkeypatch.setattr(pretrain_mod, "build_distiller", reuse)
    rc = cli_main(
        ["pretrain", str(preset_path("clip")), "data.path=/some/dir", "--out", str(tmp_path / "run"), "--dry-run"]
    )
    out = capsys.readouterr().out
    assert rc == 0 and len(built) == 1 and built[0].student.layer_scale == 0.1
    assert f"{beit_b16_student_params():,} parameters" in out
    assert "betas=(0.98, 0.999)" in out and "lr=0.0015" in out and "wd=0.05" in out
