"""Checkpoints: safetensors + JSON written atomically, ``latest`` pointer,
``keep_last`` pruning, no teacher tensors in the model file, an exported backbone that loads into
plain timm, optimizer and RNG state restored, and a run directory usable as a frozen teacher."""

from __future__ import annotations

import json

import pytest
import timm
import torch

from helpers.checkpoints import latest_weights
from maskdistill.models.backbone import load_backbone
from maskdistill.models.student import MaskedStudent
from maskdistill.models.teacher import Teacher
from maskdistill.runs import checkpoint as ckpt
from maskdistill.runs.checkpoint import find_checkpoint, load_checkpoint, read_meta, save_checkpoint
from maskdistill.train.optim import build_optimizer
from maskdistill.train.pretrain import build_distiller, pretrain


@pytest.fixture
def distilled_run(tmp_path, make_cfg, teacher_run):
    """7 steps from a maskdistill-run teacher, checkpoint every 2, keep the last 2."""
    cfg = make_cfg(
        f"teacher.spec={teacher_run}", "train.epochs=2", "train.max_steps=7", "train.ckpt_every=2", "train.keep_last=2"
    )
    run = tmp_path / "run"
    pretrain(cfg, run)
    return run, cfg


def _batch(cfg, n=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    s = cfg.data.img_size
    images = torch.randint(0, 256, (n, 3, s, s), generator=g, dtype=torch.uint8)
    grid = s // cfg.student.kwargs["patch_size"]
    mask = torch.zeros(n, grid * grid, dtype=torch.bool)
    for i in range(n):
        mask[i, torch.randperm(grid * grid, generator=g)[: cfg.mask.num_masked]] = True
    return images, mask


def test_layout_pointer_pruning_and_no_leftovers(distilled_run):
    run, _ = distilled_run
    ckdir = run / "checkpoints"
    # Saved at 2, 4, 6 and 7 (the end); keep_last=2 keeps 6 and 7. No temporary files left.
    assert sorted(p.name for p in ckdir.iterdir()) == ["latest", "step_00000006", "step_00000007"]
    assert (ckdir / "latest").read_text().strip() == "step_00000007"
    assert find_checkpoint(run) == ckdir / "step_00000007"
    assert not [p for p in run.rglob("*") if ".tmp" in p.name]
    for step in (6, 7):
        d = ckdir / f"step_{step:08d}"
        # Only safetensors and JSON: nothing that needs unpickling to load.
        assert sorted(p.name for p in d.iterdir()) == [
            "backbone.safetensors",
            "checksums.json",
            "meta.json",
            "model.safetensors",
            "optimizer.safetensors",
        ]
        meta = json.loads((d / "meta.json").read_text())
        assert meta["step"] == step and meta["kind"] == "pretrain" and meta["total_steps"] == 12
        assert meta["config"]["train"]["ckpt_every"] == 2
        assert meta["backbone"]["arch"] == "beit_base_patch16_224"
        assert len(meta["optimizer"]["param_groups"]) == 2


def test_model_file_has_no_teacher_and_fits_the_task(distilled_run):
    run, cfg = distilled_run
    sd = latest_weights(run)
    assert not [k for k in sd if k.startswith("teacher.")]
    distiller = build_distiller(cfg)
    assert any(k.startswith("teacher.") for k in distiller.state_dict())  # there was a teacher to drop
    assert set(sd) == {k for k in distiller.state_dict() if not k.startswith("teacher.")}
    assert any(k.startswith("decoder.") for k in sd) and "student.mask_token" in sd


def test_backbone_loads_into_plain_timm_and_matches_the_student(distilled_run):
    run, cfg = distilled_run
    ck = find_checkpoint(run)
    distiller = build_distiller(cfg)
    load_checkpoint(ck, distiller, restore_rng=False)
    student = distiller.student.eval()

    model, info = load_backbone(run)  # a run dir (its latest checkpoint) ...
    assert type(model).__name__ == "Beit" and not model.training
    plain = timm.create_model(info["arch"], pretrained=False, **info["kwargs"])  # ... into plain timm
    plain.load_state_dict(latest_weights(ck, "backbone"))
    ref = student.model.state_dict()
    for m in (model, plain):
        sd = m.state_dict()
        assert sorted(sd) == sorted(ref)
        assert all(torch.equal(sd[k], ref[k]) for k in ref)

    images, _ = _batch(cfg)
    x = (images.float() / 255 - distiller.mean) / distiller.std
    with torch.no_grad():
        torch.testing.assert_close(plain.eval().forward_features(x), student.model.forward_features(x), rtol=0, atol=0)
        # The masked-student wrapper around the exported encoder gives the student's tokens.
        torch.testing.assert_close(MaskedStudent(plain)(x, None), student(x, None), rtol=0, atol=0)


def test_load_checkpoint_restores_model_optimizer_and_rng(tmp_path, make_cfg):
    cfg = make_cfg()
    torch.manual_seed(0)
    task = build_distiller(cfg)
    opt = build_optimizer(task, cfg.optim)
    for seed in range(3):
        task(*_batch(cfg, seed=seed))["loss"].backward()
        opt.step()
        opt.zero_grad()
    ck = save_checkpoint(tmp_path, 3, task, opt, {"kind": "test"})
    expected_rand = torch.rand(5)

    torch.manual_seed(123)  # a different initialisation, and a fresh optimizer
    task2 = build_distiller(cfg)
    opt2 = build_optimizer(task2, cfg.optim)
    assert not torch.equal(task2.decoder.weight, task.decoder.weight)
    meta = load_checkpoint(ck, task2, opt2)
    assert meta["step"] == 3 and meta["kind"] == "test"
    assert torch.equal(torch.rand(5), expected_rand)  # the global RNG continues where it was saved

    for (name, p), p2 in zip(task.named_parameters(), task2.parameters()):
        assert torch.equal(p, p2), name
        if not p.requires_grad:
            continue
        s, s2 = opt.state[p], opt2.state[p2]
        assert sorted(s) == sorted(s2) == ["exp_avg", "exp_avg_sq", "step"], name
        for key in s:
            assert torch.equal(torch.as_tensor(s[key]), torch.as_tensor(s2[key])), (name, key)
    for g, g2 in zip(opt.param_groups, opt2.param_groups):
        assert (g["lr"], tuple(g["betas"]), g["weight_decay"], g["eps"]) == (
            g2["lr"],
            tuple(g2["betas"]),
            g2["weight_decay"],
            g2["eps"],
        )
        assert len(g["params"]) == len(g2["params"])

    # One more identical step keeps them identical (the moments are really in use).
    for t, o in ((task, opt), (task2, opt2)):
        t(*_batch(cfg, seed=9))["loss"].backward()
        o.step()
    for (name, p), p2 in zip(task.named_parameters(), task2.parameters()):
        assert torch.equal(p, p2), name


def test_a_crash_while_saving_leaves_the_previous_checkpoint_current(tmp_path, make_cfg, monkeypatch):
    cfg = make_cfg()
    task = build_distiller(cfg)
    opt = build_optimizer(task, cfg.optim)
    good = save_checkpoint(tmp_path, 2, task, opt, {"kind": "test"})
    real_save = ckpt.save_file

    def failing(tensors, path, metadata=None):
        if path.endswith("optimizer.safetensors"):
            raise OSError("disk full")
        return real_save(tensors, path, metadata=metadata)

    monkeypatch.setattr(ckpt, "save_file", failing)
    with pytest.raises(OSError):
        save_checkpoint(tmp_path, 4, task, opt, {"kind": "test"})
    assert not (tmp_path / "checkpoints" / "step_00000004").exists()
    assert find_checkpoint(tmp_path) == good and read_meta(good)["step"] == 2
    # the half-written folder stays until the next successful save, which clears it
    assert (tmp_path / "checkpoints" / ".tmp_step_00000004").is_dir()
    monkeypatch.undo()
    save_checkpoint(tmp_path, 6, task, opt, {"kind": "test"})
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["latest", "step_00000002", "step_00000006"]


def test_a_run_directory_is_a_frozen_teacher(teacher_run, make_cfg):
    distiller = build_distiller(make_cfg(f"teacher.spec={teacher_run}"))
    teacher = distiller.teacher
    assert isinstance(teacher, Teacher)
    exported = latest_weights(teacher_run, "backbone")
    own = teacher.backbone.state_dict()
    assert sorted(own) == sorted(exported) and all(torch.equal(own[k], exported[k]) for k in own)

    distiller.train()  # the loop's train mode must not reach the teacher
    assert not teacher.training and not any(m.training for m in teacher.modules())
    assert all(not p.requires_grad for p in teacher.parameters())
    opt = build_optimizer(distiller, make_cfg().optim)
    in_opt = {id(p) for g in opt.param_groups for p in g["params"]}
    assert not in_opt & {id(p) for p in teacher.parameters()}

    cfg = make_cfg()
    for seed in range(2):
        distiller(*_batch(cfg, seed=seed))["loss"].backward()
        opt.step()
        opt.zero_grad()
    assert all(p.grad is None for p in teacher.parameters())
    after = teacher.backbone.state_dict()
    assert all(torch.equal(after[k], exported[k]) for k in exported)
    # A checkpoint directory works as a spec too.
    step_dir = find_checkpoint(teacher_run)
    assert isinstance(build_distiller(make_cfg(f"teacher.spec={step_dir}")).teacher, Teacher)
