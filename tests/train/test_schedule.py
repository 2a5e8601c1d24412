"""Per-step cosine schedule with linear warm-up and a floor, and AdamW's weight-decay exclusions
(paper Table 1)."""

from __future__ import annotations

import math

import pytest
import torch

from maskdistill.config import OptimConfig, TrainConfig
from maskdistill.train.job import plan_steps
from maskdistill.train.optim import build_optimizer, cosine_lr, param_groups, set_lr
from maskdistill.train.pretrain import build_distiller

PEAK, FLOOR, TOTAL, WARM = 1.5e-3, 1e-5, 25, 5


def _formula(step):
    if step < WARM:
        return PEAK * (step + 1) / WARM
    t = min(1.0, (step - WARM) / (TOTAL - WARM))
    return FLOOR + 0.5 * (PEAK - FLOOR) * (1 + math.cos(math.pi * t))


@pytest.mark.parametrize(
    "step, expected",
    [
        (0, PEAK / WARM),  # warm-up starts at peak/W, not 0 (step 0 trains)
        (2, PEAK * 3 / WARM),
        (WARM - 1, PEAK),  # warm-up ends at the peak
        (WARM, PEAK),  # cosine starts at the peak
        (15, (PEAK + FLOOR) / 2),  # half-way through the cosine
        (TOTAL, FLOOR),  # the end is the floor
        (TOTAL + 10, FLOOR),  # and it stays there
    ],
)
def test_cosine_lr_key_points(step, expected):
    assert cosine_lr(step, TOTAL, WARM, PEAK, FLOOR) == pytest.approx(expected, rel=1e-12, abs=1e-15)


def test_cosine_lr_matches_the_formula_and_is_monotone_after_warmup():
    lrs = [cosine_lr(s, TOTAL, WARM, PEAK, FLOOR) for s in range(TOTAL + 1)]
    assert lrs == pytest.approx([_formula(s) for s in range(TOTAL + 1)], rel=1e-12)
    assert all(a < b for a, b in zip(lrs[:WARM], lrs[1:WARM]))
    assert all(a > b for a, b in zip(lrs[WARM:], lrs[WARM + 1 :]))
    assert min(lrs) >= FLOOR and max(lrs) == pytest.approx(PEAK)
    assert cosine_lr(0, 10, 0, PEAK, FLOOR) == pytest.approx(PEAK)  # no warm-up


def test_plan_steps_and_set_lr():
    tr, op = TrainConfig(epochs=3, batch_size=10), OptimConfig(warmup_epochs=0.5)
    assert plan_steps(105, tr, op) == (10, 30, 5, 30)  # drop-last: 10 steps per epoch
    tr.max_steps = 7
    assert plan_steps(105, tr, op)[3] == 7
    p = torch.nn.Parameter(torch.zeros(2))
    opt = torch.optim.AdamW([{"params": [p]}, {"params": [], "lr_scale": 0.5}], lr=1.0)
    set_lr(opt, 0.1)
    assert [g["lr"] for g in opt.param_groups] == [0.1, 0.05]


def _names(model, group):
    ids = {id(p) for p in group["params"]}
    return {n for n, p in model.named_parameters() if id(p) in ids}


NO_DECAY = ("pos_embed", "cls_token", "mask_token", "reg_token", "relative_position_bias_table")


@pytest.mark.parametrize(
    "student",
    [
        ["student.rel_pos_bias=shared"],
        ["student.rel_pos_bias=per_block", "student.abs_pos_emb=true"],
        [
            "student.arch=vit_small_patch16_224",
            "student.rel_pos_bias=none",
            "student.abs_pos_emb=true",
            "student.kwargs.reg_tokens=2",
            "decoder.kind=transformer",
            "decoder.depth=1",
        ],
    ],
)
def test_param_groups_exclude_biases_norms_and_tokens_from_decay(make_cfg, student):
    cfg = make_cfg(*student)
    model = build_distiller(cfg)
    decay, no_decay = param_groups(model, 0.05)
    assert decay["weight_decay"] == 0.05 and no_decay["weight_decay"] == 0.0
    dn, nn_ = _names(model, decay), _names(model, no_decay)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert dn | nn_ == trainable and not dn & nn_
    assert len(decay["params"]) + len(no_decay["params"]) == len(trainable)  # no duplicates
    params = dict(model.named_parameters())
    for n in trainable:
        p = params[n]
        special = any(t in n.split(".")[-1] for t in NO_DECAY)
        if p.ndim == 1 or special:
            assert n in nn_, f"{n} {tuple(p.shape)} must not be decayed"
        else:
            assert n in dn, f"{n} {tuple(p.shape)} must be decayed"
    # The named exclusions are really present in these students, and every matrix is decayed.
    expected = {"student.mask_token", "student.model.cls_token"}
    if "vit_small" in " ".join(student):
        expected |= {"student.model.pos_embed", "student.model.reg_token"}
        assert {
            "student.model.blocks.0.attn.qkv.weight",
            "decoder.blocks.0.mlp.fc1.weight",
            "decoder.proj.weight",
        } <= dn
        assert {"decoder.norm.weight", "decoder.blocks.0.norm1.bias"} <= nn_
    elif "shared" in student[0]:
        expected |= {"student.model.rel_pos_bias.relative_position_bias_table"}
    else:
        expected |= {
            "student.model.pos_embed",
            "student.model.blocks.0.attn.relative_position_bias_table",
            "student.model.blocks.1.attn.relative_position_bias_table",
        }
    assert expected <= nn_, expected - nn_
    assert all(params[n].ndim >= 2 for n in dn)
    assert {"student.model.patch_embed.proj.weight", "student.model.blocks.1.mlp.fc2.weight"} <= dn
    assert {"student.model.blocks.0.norm1.weight", "student.model.patch_embed.proj.bias"} <= nn_

    opt = build_optimizer(model, cfg.optim)
    assert [g["weight_decay"] for g in opt.param_groups] == [cfg.optim.weight_decay, 0.0]
    assert tuple(opt.param_groups[0]["betas"]) == tuple(cfg.optim.betas)
