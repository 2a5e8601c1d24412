"""``maskdistill export``: an MD student, a fine-tuned classifier and an MD student with VQ-KD code
targets written in timm's hub layout; each comes back through ``timm.create_model("local-dir:...",
pretrained=True)`` with bitwise-equal outputs on a fixed batch, the classifier with the run's class
names as ``label_names``; the model card names the teacher and the recipe and holds the analysis's
claims table. The exported folder is then a model spec of ``finetune`` and ``analyze``."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import timm
import torch

from helpers.finetune import TINY as FT_TINY
from helpers.finetune import ft_cfg
from helpers.tokenizer import TINY_CODEBOOK
from maskdistill.cli import main
from maskdistill.config import load_config
from maskdistill.hub import export_run
from maskdistill.models.backbone import load_backbone
from maskdistill.report.markdown import claims_markdown
from maskdistill.runs.checkpoint import read_meta
from maskdistill.runs.metrics import read_metrics
from maskdistill.train.finetune import finetune
from maskdistill.train.pretrain import pretrain
from maskdistill.train.vqkd import TokenizerConfig, train_tokenizer


def _batch(side: int = 32) -> torch.Tensor:
    return torch.randn(4, 3, side, side, generator=torch.Generator().manual_seed(0))


def _reloaded(folder: Path) -> torch.nn.Module:
    return timm.create_model(f"local-dir:{folder}", pretrained=True).eval()


def _same_outputs(run: Path, folder: Path) -> None:
    ours, _ = load_backbone(run)
    theirs = _reloaded(folder)
    x = _batch()
    with torch.no_grad():
        assert torch.equal(ours(x), theirs(x))
        assert torch.equal(ours.forward_features(x), theirs.forward_features(x))


@pytest.fixture(scope="module")
def md_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("md") / "run"
    torch.set_num_threads(1)
    pretrain(load_config("demo", _tiny_md("train.max_steps=3")), out)
    return out


def _tiny_md(*extra: str) -> list:
    from conftest import TINY

    return [*TINY, *extra]


def _claims(folder: Path) -> pd.DataFrame:
    """A claims table as ``maskdistill report`` saves it (``claims.csv``)."""
    folder.mkdir(parents=True, exist_ok=True)
    cols = ("claim", "teacher_value", "student_value", "delta", "verdict")
    rows = [("attention distance falls", 0.61, 0.42, -0.19, "holds"), ("entropy falls", 2.5, 2.7, 0.2, "does not hold")]
    table = pd.DataFrame(
        [
            dict(teacher="clip", student="md", teacher_layers="8-11", student_layers="8-11", **dict(zip(cols, r)))
            for r in rows
        ]
    )
    table.to_csv(folder / "claims.csv", index=False)
    return table


def test_md_student_round_trips_through_timm_with_its_card(md_run, tmp_path):
    analysis = tmp_path / "analysis"
    table = _claims(analysis)
    out = export_run(md_run, tmp_path / "md-vit", analysis=analysis)
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    _same_outputs(md_run, out)

    cfg = json.loads((out / "config.json").read_text())
    pc = cfg["pretrained_cfg"]
    assert cfg["architecture"] == "beit_base_patch16_224" and cfg["num_classes"] == 0
    assert pc["input_size"] == [3, 32, 32] and pc["mean"] == [0.5] * 3 and pc["std"] == [0.25] * 3
    assert "label_names" not in pc and "hf_hub_id" not in pc and "tag" not in pc  # nothing of BEiT's own weights
    assert cfg["model_args"]["use_shared_rel_pos_bias"] is True and cfg["model_args"]["embed_dim"] == 32

    card = (out / "README.md").read_text()
    assert card.startswith("---\nlibrary_name: timm\n") and "masked distillation" in card
    assert "**Teacher:** `pixels`" in card and "| objective (R) | smooth_l1 |" in card
    assert "| masks (M) | blockwise |" in card and "| student (S) | beit_base_patch16_224 |" in card
    loss = read_metrics(md_run / "metrics.csv")[-1]["loss"]
    assert f"| final training loss | {loss:.4g} |" in card and "| steps | 3 |" in card
    # the claims table as the demo prints it, from the saved claims.csv
    assert claims_markdown(pd.read_csv(analysis / "claims.csv")) in card
    for r in table.itertuples():
        assert f"| {r.teacher} → {r.student} | {r.claim} | {r.teacher_value:.3g} |" in card
        assert f"| {r.verdict} |" in card
    assert "hf upload <org>/md-vit" in card and 'timm.create_model("hf-hub:<org>/md-vit"' in card


def test_export_refuses_a_full_folder_and_a_missing_claims_file(md_run, tmp_path):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "mine.txt").write_text("keep")
    assert main(["export", str(md_run), "--out", str(tmp_path / "full")]) == 2
    assert (tmp_path / "full" / "mine.txt").read_text() == "keep"
    with pytest.raises(FileNotFoundError, match="holds no claims.csv"):
        export_run(md_run, tmp_path / "x", analysis=tmp_path / "no_analysis")
    assert not (tmp_path / "x").exists()


@pytest.fixture(scope="module")
def exported_md(md_run, tmp_path_factory) -> Path:
    return export_run(md_run, tmp_path_factory.mktemp("hub") / "md-vit")


def test_finetuned_classifier_round_trips_with_its_label_names(md_run, exported_md, tmp_path, restore_logging):
    """``finetune model.spec=local-dir:DIR`` runs, equals the fine-tune of the run itself, and its
    export carries the run's classes."""
    ft_dir, ft_run = tmp_path / "ft_dir", tmp_path / "ft_run"
    common = ("train.max_steps=2", "data.builtin_images=32", "data.builtin_val_images=16", "model.global_pool=avg")
    spec = f"model.spec=local-dir:{exported_md}"
    assert main(["finetune", "demo", spec, *FT_TINY, *common, "--out", str(ft_dir)]) == 0
    finetune(ft_cfg(str(md_run), *common), ft_run)  # the same start, read from the run folder
    losses = [r["loss"] for r in read_metrics(ft_dir / "metrics.csv")]
    assert len(losses) == 2 and losses == [r["loss"] for r in read_metrics(ft_run / "metrics.csv")]

    out = export_run(ft_dir, tmp_path / "ft-vit")
    classes = read_meta(ft_dir / "checkpoints" / "step_00000002")["backbone"]["classes"]
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["label_names"] == classes == cfg["pretrained_cfg"]["label_names"] and len(classes) == 10
    assert _reloaded(out).pretrained_cfg["label_names"] == classes
    _same_outputs(ft_dir, out)
    card = (out / "README.md").read_text()
    assert "image classifier fine-tuned" in card and f"| started from | local-dir:{exported_md} |" in card
    assert "| final top1 |" in card and "**Classes (10):**" in card
    best = export_run(ft_dir / "best", tmp_path / "ft-best")  # the best evaluation's network
    best_top1 = json.loads((ft_dir / "best" / "meta.json").read_text())["metrics"]["top1"]
    assert f"| best top1 | {best_top1:.4g} |" in (best / "README.md").read_text()
    assert json.loads((best / "config.json").read_text())["label_names"] == classes


def test_vqkd_target_student_round_trips_and_its_card_names_the_tokenizer(tmp_path):
    from conftest import TINY

    tok = tmp_path / "tok"
    tok_overrides = [o for o in TINY if o.split("=")[0].split(".")[0] in ("data", "train", "teacher")]
    tok_cfg = load_config(
        "demo",
        [
            *tok_overrides,
            "tokenizer.kwargs={patch_size: 8, embed_dim: 32, depth: 1, num_heads: 2}",
            *TINY_CODEBOOK,
            "train.batch_size=16",
            "tokenizer.dead_threshold=1",
            "health.fixed_images=8",
            "train.max_steps=2",
        ],
        schema=TokenizerConfig,
        kind="tokenizer",
    )
    train_tokenizer(tok_cfg, tok)
    run = tmp_path / "md_codes"
    pretrain(load_config("demo_tokenizer", [*TINY, f"decoder.tokenizer={tok}", "train.max_steps=2"]), run)
    out = export_run(run, tmp_path / "md-codes")
    _same_outputs(run, out)
    card = (out / "README.md").read_text()
    assert f"the targets are the codes of the VQ-KD tokenizer `{tok}` (BEiT v2)" in card
    assert "| objective (R) | ce |" in card and "| decoder (D) | tokenizer |" in card


def test_analyze_takes_the_exported_folder_and_matches_the_run(md_run, exported_md, tmp_path):
    out = tmp_path / "analysis"
    argv = ["--data", "builtin", "--images", "8", "--batch-size", "8", "--probes", "attention_distance", "--no-report"]
    assert (
        main(
            ["analyze", "--model", f"hub=local-dir:{exported_md}", "--model", f"run={md_run}", "--out", str(out), *argv]
        )
        == 0
    )
    a = pd.read_csv(out / "hub" / "attention_distance.csv")
    b = pd.read_csv(out / "run" / "attention_distance.csv")
    assert len(a) > 0 and a["value"].tolist() == b["value"].tolist()
