"""The output folder: a folder that holds a run is refused unless
``--resume`` or ``--overwrite``; a refused call changes no byte of the old run; ``--overwrite``
replaces it; resuming with a different config lists the differences and refuses; a start that fails
on bad input leaves nothing that blocks the next try."""

from __future__ import annotations

from pathlib import Path
from typing import Dict

import pytest

from maskdistill.cli import main
from maskdistill.runs.folder import RunExistsError
from maskdistill.runs.metrics import read_metrics
from maskdistill.train.pretrain import pretrain


def _snapshot(d: Path) -> Dict[str, bytes]:
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


@pytest.fixture
def cli(tiny_overrides, capsys, restore_logging):
    """``cli(out, *extra, flag=None) -> (rc, stderr)`` for ``maskdistill pretrain demo <tiny> ...``."""

    def call(out: Path, *extra: str, flag: str = ""):
        argv = ["pretrain", "demo", *tiny_overrides, "train.max_steps=2", *extra, "--out", str(out)]
        rc = main(argv + ([flag] if flag else []))
        return rc, capsys.readouterr().err

    return call


def test_api_refuses_a_folder_that_holds_a_run(tmp_path, make_cfg):
    run = tmp_path / "run"
    pretrain(make_cfg("train.max_steps=2"), run)
    before = _snapshot(run)
    assert "config.yaml" in before and "metrics.csv" in before
    with pytest.raises(RunExistsError) as err:
        pretrain(make_cfg("train.max_steps=2"), run)
    assert "--resume" in str(err.value) and "--overwrite" in str(err.value) and str(run) in str(err.value)
    assert _snapshot(run) == before


def test_cli_refuses_then_overwrites(tmp_path, cli):
    run = tmp_path / "run"
    rc, _ = cli(run)
    assert rc == 0
    before = _snapshot(run)
    assert "log.txt" in before and any(k.endswith("model.safetensors") for k in before)

    rc, err = cli(run)
    assert rc == 2
    assert "maskdistill: error:" in err and "--resume" in err and "--overwrite" in err
    assert _snapshot(run) == before, "a refused run changed files of the old one"

    rc, _ = cli(run, "train.seed=1", flag="--overwrite")
    assert rc == 0
    after = _snapshot(run)
    assert b"seed: 1" in after["config.yaml"] and after["config.yaml"] != before["config.yaml"]
    assert [r["step"] for r in read_metrics(run / "metrics.csv")] == [1, 2]
    assert after["metrics.csv"] != before["metrics.csv"]
    ck = sorted(k for k in after if k.endswith("model.safetensors"))
    assert ck and all(after[k] != before.get(k) for k in ck)
    # The new run's log replaces the old one (the CLI had opened log.txt before the old run went).
    assert "log.txt" in after, "--overwrite lost the new run's log.txt"
    assert b"done:" in after["log.txt"] and after["log.txt"].count(b"done:") == 1


def test_resume_with_a_different_config_lists_the_differences(tmp_path, cli, make_cfg):
    run = tmp_path / "run"
    assert cli(run)[0] == 0
    before = _snapshot(run)
    rc, err = cli(run, "optim.lr=0.002", "train.seed=3", flag="--resume")
    assert rc == 2
    assert "optim.lr: 0.001 -> 0.002" in err and "train.seed: 0 -> 3" in err
    assert _snapshot(run) == before
    # Keys that do not change results may differ (here: max_steps, log_every, ckpt_every).
    summary = pretrain(make_cfg("train.max_steps=4", "train.log_every=5", "train.ckpt_every=7"), run, resume=True)
    assert summary["step"] == 4 and summary["steps_run"] == 2
    # Resuming a finished run runs nothing and keeps its metrics and checkpoints as they are.
    kept = lambda: {k: v for k, v in _snapshot(run).items() if k != "log.txt" and not k.startswith("tb/")}  # noqa: E731
    done = kept()
    again = pretrain(make_cfg("train.max_steps=4"), run, resume=True)
    assert again["steps_run"] == 0
    assert kept() == done
    with pytest.raises(ValueError, match=r"optim\.lr: 0\.001 -> 0\.002"):
        pretrain(make_cfg("optim.lr=0.002"), run, resume=True)


def test_resume_of_a_folder_without_a_run_says_so(tmp_path, cli):
    rc, err = cli(tmp_path / "empty", flag="--resume")
    assert rc == 2 and "no checkpoints" in err


def test_a_start_that_fails_on_bad_input_does_not_block_the_next(tmp_path, cli):
    """A missing data folder is reported before the run folder is written, so the corrected command
    runs without --overwrite."""
    run = tmp_path / "run"
    missing = tmp_path / "no_such_images"
    rc, err = cli(run, f"data.path={missing}")
    assert rc == 2 and str(missing) in err and "data.path" in err
    assert not (run / "config.yaml").exists() and not (run / "checkpoints").exists()
    rc, err = cli(run)
    assert rc == 0, err


def test_overwrite_removes_the_old_runs_best_and_callback_logs(tmp_path):
    from maskdistill.runs.folder import prepare_run_dir

    run = tmp_path / "run"
    (run / "best").mkdir(parents=True)
    (run / "best" / "meta.json").write_text('{"metrics": {"top1": 0.99}}')
    (run / "config.yaml").write_text("train: {}\n")
    for name in ("metrics_eval.csv", "metrics_sharpness.csv", "notes.txt"):
        (run / name).write_text("step\n1\n")
    prepare_run_dir(run, {"train": {}}, resume=False, overwrite=True)
    # an old best score would decide whether the new run saves its own best/
    assert sorted(p.name for p in run.iterdir()) == ["notes.txt"]  # what the user put there stays
