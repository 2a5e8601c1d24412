"""Fine-tuning: layer decay groups and scales, freezing, linear probe, the paper preset,
shared -> per-block relative position bias, learning on built-in data, exact resume, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import timm
import torch
from safetensors.torch import load_file, save_file

from helpers.checkpoints import latest_weights
from helpers.finetune import TINY, ft_cfg, vit_spec
from maskdistill.config import ConfigError, load_config
from maskdistill.data.synthetic import ShapesTextures
from maskdistill.models.classifier import build_classifier_model, expand_shared_rel_pos_bias
from maskdistill.models.loading import WeightsError
from maskdistill.train.finetune import finetune
from maskdistill.train.finetune_config import FinetuneConfig
from maskdistill.train.layer_decay import layer_decay_groups


def test_layer_decay_groups_vit_b16_are_beits_14_groups():
    model = timm.create_model("vit_base_patch16_224", pretrained=False, num_classes=10)
    groups = layer_decay_groups(model, weight_decay=0.05, layer_decay=0.6)
    scale = {n: g["lr_scale"] for g in groups for n in g["names"]}
    assert sorted({g["layer"] for g in groups}) == list(range(14))
    for name in ("patch_embed.proj.weight", "cls_token", "pos_embed"):
        assert scale[name] == pytest.approx(0.6**13)  # decay^(depth+1)
    for i in range(12):
        assert scale[f"blocks.{i}.attn.qkv.weight"] == pytest.approx(0.6 ** (12 - i))  # decay^(depth-i)
    for name in ("norm.weight", "head.weight", "head.bias"):
        assert scale[name] == 1.0
    decay = {n: g["weight_decay"] for g in groups for n in g["names"]}
    assert decay["blocks.3.mlp.fc1.weight"] == 0.05 and decay["head.weight"] == 0.05
    assert decay["pos_embed"] == decay["cls_token"] == decay["blocks.3.mlp.fc1.bias"] == decay["norm.weight"] == 0.0
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))


def test_paper_preset_is_table1_item_by_item():
    cfg = load_config(
        "vit_b16_paper", ["model.spec=timm:vit_base_patch16_clip_224"], schema=FinetuneConfig, kind="finetune"
    )
    # Table 1, column "CLIP/ViT-B/16".
    assert (cfg.train.epochs, cfg.train.batch_size) == (50, 1024)
    assert tuple(cfg.optim.betas) == (0.9, 0.95)
    assert (cfg.optim.lr, cfg.optim.min_lr, cfg.optim.warmup_epochs) == (5e-5, 1e-7, 10)
    assert (cfg.optim.layer_decay, cfg.optim.weight_decay, cfg.optim.clip_grad) == (0.6, 0.05, None)
    assert cfg.optim.freeze_patch_projection is True and cfg.optim.freeze_blocks == 0
    assert (cfg.model.drop_path, cfg.model.rel_pos_bias) == (0.0, "per_block")
    assert cfg.aug.label_smoothing == 0.1 and cfg.aug.mixup == 0.0 and cfg.aug.cutmix == 0.0
    d = cfg.data
    assert (d.img_size, d.min_scale, d.color_jitter) == (224, 0.08, 0.4)
    assert d.auto_augment == "rand-m9-mstd0.5-inc1"
    assert (d.reprob, d.remode, d.recount) == (0.25, "pixel", 1)
    beit = load_config("vit_b16_beitv2", ["model.spec=x"], schema=FinetuneConfig, kind="finetune")
    assert (beit.train.epochs, beit.optim.lr, beit.optim.layer_decay, beit.model.drop_path) == (100, 5e-4, 0.65, 0.1)
    assert (beit.aug.mixup, beit.aug.cutmix, beit.aug.label_smoothing) == (0.8, 1.0, 0.1)


def test_shared_rel_pos_bias_expands_to_per_block_with_the_same_outputs(teacher_run):
    """The demo-style MD student (BEiT, shared bias) before and after the expansion."""
    from maskdistill.models.backbone import load_backbone

    shared, info = load_backbone(teacher_run)
    assert shared.rel_pos_bias is not None
    with torch.no_grad():  # make the bias matter: the pre-trained table is nearly zero after 2 steps
        shared.rel_pos_bias.relative_position_bias_table.normal_(0, 1.0)
    sd = {k: v for k, v in shared.state_dict().items()}
    per_block, _ = build_classifier_model(
        f"timm:{info['arch']}@{_save(sd, teacher_run.parent)}", 0, 32, global_pool="avg", **_beit_kw(info)
    )
    assert per_block.rel_pos_bias is None
    for blk in per_block.blocks:
        assert torch.equal(blk.attn.relative_position_bias_table, sd["rel_pos_bias.relative_position_bias_table"])
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(shared.eval().forward_features(x), per_block.eval().forward_features(x), atol=1e-5)
    expanded = expand_shared_rel_pos_bias(sd, 2)
    assert "rel_pos_bias.relative_position_bias_table" not in expanded


def _beit_kw(info) -> dict:
    return {k: v for k, v in info["kwargs"].items() if k not in ("num_classes", "img_size", "global_pool")}


def _save(sd, folder: Path) -> Path:
    path = folder / "beit_shared.safetensors"
    save_file({k: v.contiguous() for k, v in sd.items()}, str(path))
    return path


def test_frozen_blocks_and_patch_projection_get_no_update(vit_file, tmp_path):
    out = tmp_path / "frozen"
    finetune(ft_cfg("x", *vit_spec(vit_file), "optim.freeze_blocks=1", "train.max_steps=3"), out)
    before, after = load_file(str(vit_file)), latest_weights(out, "backbone")
    frozen = [k for k in before if k.startswith(("patch_embed.", "cls_token", "pos_embed", "blocks.0."))]
    trained = [k for k in before if k.startswith(("blocks.1.", "blocks.2.", "norm."))]
    assert all(torch.equal(before[k], after[k]) for k in frozen)
    assert all(not torch.equal(before[k], after[k]) for k in trained if k.endswith("weight"))
    # Only the patch projection (the paper's default) when no block is frozen.
    out2 = tmp_path / "proj"
    finetune(ft_cfg("x", *vit_spec(vit_file), "train.max_steps=2"), out2)
    after2 = latest_weights(out2, "backbone")
    assert torch.equal(before["patch_embed.proj.weight"], after2["patch_embed.proj.weight"])
    assert not torch.equal(before["pos_embed"], after2["pos_embed"])


def test_linear_probe_leaves_the_backbone_bitwise_unchanged(vit_file, tmp_path):
    out = tmp_path / "lp"
    summary = finetune(
        ft_cfg("x", *vit_spec(vit_file), "optim.linear_probe=true", "model.drop_path=0.2", "train.max_steps=4"), out
    )
    before, after = load_file(str(vit_file)), latest_weights(out, "backbone")
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert set(after) - set(before) == {"head.weight", "head.bias"}
    assert summary["steps_run"] == 4


def test_finetune_command_writes_a_run_with_evaluation_and_best(vit_file, tmp_path, restore_logging):
    """Through the CLI; learning itself is checked by tests/e2e.test_demo.py (fine-tuning on shape)."""
    from maskdistill.cli import main

    out = tmp_path / "cli"
    assert main(["finetune", "demo", *TINY, *vit_spec(vit_file), "eval.every_epochs=0.5", "--out", str(out)]) == 0
    rows = (out / "metrics_eval.csv").read_text().splitlines()
    assert rows[0] == "step,epoch,top1,top5,loss" and [r.split(",")[0] for r in rows[1:]] == ["3", "6"]
    best = json.loads((out / "best" / "meta.json").read_text())
    assert best["metrics"]["top1"] == max(float(r.split(",")[2]) for r in rows[1:])
    assert main(["finetune", "demo", *TINY, *vit_spec(vit_file), "--out", str(out)]) == 2  # never clobbered


def test_a_head_trained_on_other_classes_is_reinitialised(vit_file, tmp_path, caplog):
    """A fine-tuned run saves its class names: fine-tuning it again on the same classes keeps its head,
    on other classes of the same number (texture -> shape of the built-in data) starts a fresh one."""
    first = tmp_path / "texture"
    finetune(ft_cfg("x", *vit_spec(vit_file), "train.max_steps=2"), first)
    head = {k: v for k, v in load_file(str(first / "best" / "backbone.safetensors")).items() if k.startswith("head.")}
    assert set(head) == {"head.weight", "head.bias"}
    for label, kept in (("texture", True), ("shape", False)):
        caplog.clear()
        with caplog.at_level("WARNING", logger="maskdistill"):
            model, _ = build_classifier_model(
                str(first / "best"), 10, 32, classes=ShapesTextures(1, 16, label=label).classes
            )
        assert torch.equal(model.head.weight, head["head.weight"]) is kept, label
        warned = (
            "trained on other classes (horizontal_stripes, vertical_stripes, diagonal_stripes, checkerboard, "
            "... 10 in all) than the data's (circle, square, triangle, cross, ... 10 in all)"
        ) in caplog.text
        assert warned is not kept, caplog.text


def test_resume_is_exact_with_randaugment_erasing_mixup_and_ema(vit_file, tmp_path):
    aug = [
        *vit_spec(vit_file),
        "data.auto_augment=rand-m9-mstd0.5-inc1",
        "data.reprob=0.25",
        "aug.mixup=0.8",
        "aug.cutmix=1.0",
        "ema.enabled=true",
        "ema.decay=0.9",
        "model.drop_path=0.1",
        "eval.every_epochs=0.5",
    ]
    straight, split = tmp_path / "straight", tmp_path / "split"
    finetune(ft_cfg("x", *aug), straight)
    finetune(ft_cfg("x", *aug, "train.max_steps=4"), split)
    finetune(ft_cfg("x", *aug), split, resume=True)
    a, b = latest_weights(straight), latest_weights(split)
    assert any(k.startswith("ema.") for k in a)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    # The interrupted run also evaluated where it stopped (step 4); every scheduled evaluation matches.
    rows = lambda d: [r for r in (d / "metrics_eval.csv").read_text().splitlines() if not r.startswith("4,")]  # noqa: E731
    assert rows(straight) == rows(split) and len(rows(straight)) == 3


def test_class_lists_of_train_and_val_must_match(vit_file, tmp_path, pngs):
    pngs(tmp_path / "train", 8, classes=("cats", "dogs", "owls"))
    pngs(tmp_path / "val", 4, classes=("cats", "dogs", "emus"))
    cfg = ft_cfg(
        "x",
        *vit_spec(vit_file),
        f"data.path={tmp_path / 'train'}",
        f"data.val_path={tmp_path / 'val'}",
        "train.batch_size=8",
    )
    with pytest.raises(ValueError, match=r"only in train: \['owls'\]; only in val: \['emus'\]"):
        finetune(cfg, tmp_path / "run")
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_checkpoint_of_another_architecture_is_refused_with_keys(vit_file, teacher_run, tmp_path):
    cfg = ft_cfg("x", *vit_spec(vit_file), "model.spec=timm:beit_base_patch16_224@" + str(vit_file))
    with pytest.raises(WeightsError, match=r"(?s)missing keys \(15\): blocks.0.gamma_1.*unexpected keys"):
        finetune(cfg, tmp_path / "run")
    # an MD checkpoint (BEiT) fine-tuned as the ViT the user expects
    cfg = ft_cfg(str(teacher_run), "model.arch=vit_small_patch16_224")
    with pytest.raises(WeightsError, match=r"(?s)do not fit VisionTransformer.*unexpected keys.*q_bias"):
        finetune(cfg, tmp_path / "run2")


def test_config_errors_name_the_fix():
    with pytest.raises(ConfigError, match="model.spec is empty"):
        finetune(load_config("demo", schema=FinetuneConfig, kind="finetune"), "/nonexistent/never")
    with pytest.raises(ConfigError, match="even batch size"):
        from maskdistill.train.finetune_config import validate_finetune

        validate_finetune(ft_cfg("x", "aug.mixup=0.8", "train.batch_size=15"))
