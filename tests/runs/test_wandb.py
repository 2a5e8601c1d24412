"""Weights & Biases beside metrics.csv (``log.wandb=true``), offline (``WANDB_MODE=offline`` writes
``<run>/wandb/offline-run-*``): the demo pre-training's W&B history holds the same loss, lr and epoch
values as metrics.csv, step by step; a resumed run continues the same W&B run id and appends the
remaining steps; a new run in the folder (``--overwrite``) starts a new W&B run; the resolved config
is logged; a fine-tune's evaluations (``eval/top1``) go there as in metrics_eval.csv; without the
package, the run is refused before its folder is written, naming the extra."""

from __future__ import annotations

import json
import sys

import pytest

from helpers.wandb_offline import history, offline_runs, run_config
from maskdistill.errors import UsageError
from maskdistill.runs.metrics import read_metrics
from maskdistill.train.pretrain import pretrain

pytest.importorskip("wandb")


@pytest.fixture
def offline(monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_DISABLE_GIT", "true")


def _logged(run):
    """[(file, step, {name: value})] of every W&B history row of the run folder."""
    return [(f, step, items) for f in offline_runs(run) for step, items in history(f)]


def test_offline_history_equals_metrics_csv_and_resume_appends(tmp_path, make_cfg, offline):
    run = tmp_path / "run"
    wb = ("log.wandb=true", "log.tags=[demo,md]", "log.project=md-tests")
    pretrain(make_cfg(*wb, "train.max_steps=3"), run)
    first_id = json.loads((run / "wandb_run.json").read_text())["id"]
    assert [s for _, s, _ in _logged(run)] == [1, 2, 3]

    pretrain(make_cfg(*wb), run, resume=True)  # to the end of the schedule: steps 4..6
    assert json.loads((run / "wandb_run.json").read_text())["id"] == first_id
    files = offline_runs(run)
    assert len(files) == 2 and all(f.name == f"run-{first_id}.wandb" for f in files)
    rows = _logged(run)
    assert [s for _, s, _ in rows] == [1, 2, 3, 4, 5, 6]
    assert {s for f, s, _ in rows if f == files[1]} == {4, 5, 6}  # the resumed part appended to the same run
    csv = read_metrics(run / "metrics.csv")
    assert len(csv) == 6
    for (_, step, items), row in zip(rows, csv):
        assert step == row["step"]
        assert items["train/loss"] == row["loss"] and items["train/lr"] == row["lr"]
        assert items["train/epoch"] == row["epoch"] and items["train/grad_norm"] == row["grad_norm"]
    cfg = run_config(files[0])
    assert cfg["teacher"]["spec"] == "pixels" and cfg["log"]["tags"] == ["demo", "md"]


def test_an_overwritten_run_starts_a_new_wandb_run_and_resume_may_switch_logging(tmp_path, make_cfg, offline):
    run = tmp_path / "run"
    pretrain(make_cfg("log.wandb=true", "train.max_steps=2"), run)
    old = json.loads((run / "wandb_run.json").read_text())["id"]
    pretrain(make_cfg("log.wandb=true", "train.max_steps=2"), run, overwrite=True)
    new = json.loads((run / "wandb_run.json").read_text())["id"]
    assert new != old
    pretrain(make_cfg("train.max_steps=3"), run, resume=True)  # log.* may change on resume: W&B off
    assert [s for f, s, _ in _logged(run) if f.name == f"run-{new}.wandb"] == [1, 2]


def test_missing_wandb_names_the_extra(tmp_path, make_cfg, monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)  # import wandb raises ImportError
    with pytest.raises(UsageError, match=r"maskdistill\[wandb\]"):
        pretrain(make_cfg("log.wandb=true", "train.max_steps=1"), tmp_path / "run")
    assert not (tmp_path / "run").exists()  # refused before the run folder is written


def test_a_finetune_logs_its_evaluations_too(tmp_path, offline):
    from helpers.finetune import ft_cfg, save_tiny_vit, vit_spec
    from maskdistill.train.finetune import finetune

    weights = save_tiny_vit(tmp_path / "vit.safetensors")
    overrides = [*vit_spec(weights)[1:], "train.max_steps=2", "data.builtin_images=32", "data.builtin_val_images=16"]
    run = tmp_path / "ft"
    finetune(ft_cfg(vit_spec(weights)[0].split("=", 1)[1], *overrides, "log.wandb=true"), run)
    rows = _logged(run)
    evals = read_metrics(run / "metrics_eval.csv")
    logged = [(s, items["eval/top1"]) for _, s, items in rows if "eval/top1" in items]
    assert evals and logged == [(int(r["step"]), r["top1"]) for r in evals]
    assert [items["train/loss"] for _, _, items in rows if "train/loss" in items] == [
        r["loss"] for r in read_metrics(run / "metrics.csv")
    ]
