"""Fine-tuning sweeps (Fig. 8b/8c) and the loop's callback interface."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch

from helpers.finetune import TINY, ft_cfg, vit_spec
from maskdistill.report.plots.sweeps import plot_sweep
from maskdistill.train.callbacks import Callback
from maskdistill.train.finetune import finetune
from maskdistill.train.sweep import run_sweep


def _spec(path: Path) -> str:
    return f"timm:vit_small_patch16_224@{path}"


def _kwargs():
    return [o for o in vit_spec(Path("x")) if o.startswith("model.kwargs")]


def test_lr_sweep_table_figure_resume_and_refusal(vit_file, tmp_path):
    out = tmp_path / "sweep"
    models = {"a": _spec(vit_file), "b": _spec(vit_file)}
    table = run_sweep("lr", "demo", models, out, ["1e-4", "3e-3"], [*TINY, *_kwargs()])
    assert list(table.columns[:6]) == ["model", "setting", "value", "top1", "top5", "best_top1"]
    assert len(table) == 4 and set(table["value"]) == {1e-4, 3e-3} and (table["epochs"] == 1.0).all()
    assert table.equals(pd.read_csv(out / "sweep_lr.csv").pipe(lambda t: t.astype(table.dtypes)))
    plot_sweep(table, "lr", out / "sweep_lr")  # what `maskdistill sweep` draws after the runs
    for ext in ("png", "pdf"):
        assert (out / f"sweep_lr.{ext}").stat().st_size > 1000
    # each point is the evaluation of its own run
    run = out / "a" / "lr_0.003"
    last = (run / "metrics_eval.csv").read_text().splitlines()[-1].split(",")
    assert float(last[2]) == table[(table.model == "a") & (table.value == 3e-3)]["top1"].item()
    # a second call trains nothing (finished runs are kept) and gives the same table
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("model.safetensors")}
    again = run_sweep("lr", "demo", models, out, ["1e-4", "3e-3"], [*TINY, *_kwargs()])
    assert again.equals(table)
    assert {p: p.stat().st_mtime_ns for p in out.rglob("model.safetensors")} == stamps
    # the same folder with another shared recipe is refused, naming the key
    with pytest.raises(ValueError, match=r"aug.label_smoothing: 0.1 -> 0.2"):
        run_sweep("lr", "demo", models, out, ["1e-4"], [*TINY, *_kwargs(), "aug.label_smoothing=0.2"])


def test_freeze_sweep_runs_every_depth_then_the_linear_probe(vit_file, tmp_path):
    table = run_sweep("freeze", "demo", {"vit": _spec(vit_file)}, tmp_path / "f", None, [*TINY, *_kwargs()])
    assert [str(v) for v in table["value"]] == ["0.0", "1.0", "2.0", "3.0", "linear"]
    assert (tmp_path / "f" / "vit" / "linear" / "best").is_dir()
    assert len(plot_sweep(table, "freeze", tmp_path / "f" / "sweep_freeze")) == 2


class Recorder(Callback):
    every = 2

    def __init__(self):
        self.steps, self.sums, self.evals, self.modes = [], [], [], []

    def on_step_end(self, state):
        batch = state.fixed_batch()
        self.steps.append(state.step)
        self.sums.append(float(batch["image"].double().sum()))
        self.modes.append(state.model.training)
        with torch.no_grad():
            state.log(
                {
                    "fixed_loss": float(
                        torch.nn.functional.cross_entropy(state.model.logits(batch["image"]), batch["label"])
                    )
                },
                group="recorder",
            )

    def on_eval_end(self, state, metrics):
        self.evals.append((state.step, round(metrics["top1"], 6)))


def test_callbacks_see_a_fixed_batch_the_model_and_a_logger(vit_file, tmp_path):
    cb = Recorder()
    out = tmp_path / "cb"
    finetune(ft_cfg("x", *vit_spec(vit_file), "train.max_steps=5", "eval.every_epochs=0.5"), out, callbacks=[cb])
    assert cb.steps == [2, 4, 5]  # every 2 steps and the last
    assert len(set(cb.sums)) == 1 and cb.modes == [False] * 3  # same batch, eval mode
    assert [s for s, _ in cb.evals] == [3, 5]
    rows = (out / "metrics_recorder.csv").read_text().splitlines()
    assert rows[0] == "step,epoch,fixed_loss" and [r.split(",")[0] for r in rows[1:]] == ["2", "4", "5"]
