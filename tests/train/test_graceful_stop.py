"""Graceful stop: SIGTERM, SIGUSR1 or Ctrl-C (SIGINT) sent to ``maskdistill pretrain`` mid-run ends
it after the current step with a checkpoint at that step, one ``maskdistill: interrupted:`` line,
exit 75 and ``stopped.json``; ``--resume`` then logs the same losses as a run that was never
stopped. The runs are real processes (the signal goes to the process, as SLURM sends it)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import List, Tuple

import pytest

from maskdistill.errors import RESUMABLE
from maskdistill.runs.metrics import read_metrics
from maskdistill.train.pretrain import pretrain

REPO = Path(__file__).resolve().parents[2]
# 60 scheduled steps (6 per epoch), no periodic checkpoint: the only one is the graceful stop's.
COMMON = ("train.epochs=10", "train.max_steps=40", "train.ckpt_every=1000", "student.drop_path=0.1")
COLUMNS = ("step", "epoch", "loss", "lr", "grad_norm")


def run_and_signal(argv: List[str], sig: int, when: str = "step 2/") -> Tuple[int, str]:
    """Start ``maskdistill ARGV``, send ``sig`` once a stderr line contains ``when``; (rc, stderr)."""
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "maskdistill", *argv], stderr=subprocess.PIPE, text=True, env=env, cwd=REPO
    )
    seen = []
    assert proc.stderr is not None
    for line in proc.stderr:
        seen.append(line)
        if when in line:
            proc.send_signal(sig)
            break
    rest = proc.stderr.read()
    return proc.wait(timeout=120), "".join(seen) + rest


def rows(run: Path):
    return [{k: r[k] for k in COLUMNS} for r in read_metrics(run / "metrics.csv")]


def assert_same_losses(a: Path, b: Path) -> None:
    ra, rb = rows(a), rows(b)
    assert [r["step"] for r in ra] == [r["step"] for r in rb] == list(range(1, 41))
    for x, y in zip(ra, rb):
        assert x["lr"] == y["lr"] and abs(x["loss"] - y["loss"]) <= 1e-7, (x, y)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, tiny_overrides_module):
    from maskdistill.config import load_config

    out = tmp_path_factory.mktemp("uninterrupted") / "run"
    pretrain(load_config("demo", tiny_overrides_module + list(COMMON)), out)
    return out


@pytest.fixture(scope="module")
def tiny_overrides_module():
    from conftest import TINY

    return list(TINY)


def _stopped_step(run: Path) -> int:
    latest = (run / "checkpoints" / "latest").read_text().strip()
    return int(latest.split("_")[1])


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGUSR1])
def test_a_signal_mid_run_checkpoints_the_current_step_and_resume_is_exact(
    tmp_path, tiny_overrides, make_cfg, uninterrupted, sig
):
    run = tmp_path / "run"
    rc, err = run_and_signal(["pretrain", "demo", *tiny_overrides, *COMMON, "--out", str(run)], sig)
    assert rc == RESUMABLE == 75, err
    assert "Traceback" not in err
    (line,) = [x for x in err.splitlines() if x.startswith("maskdistill:")]
    step = _stopped_step(run)
    assert 2 <= step < 40
    # The checkpoint is at the step the signal arrived in: the last row logged, not a periodic one.
    assert rows(run)[-1]["step"] == step and len(rows(run)) == step
    assert line.startswith(f"maskdistill: interrupted: {signal.Signals(sig).name} received: stopped after step {step}")
    assert "--resume" in line
    stopped = json.loads((run / "stopped.json").read_text())
    assert stopped["step"] == step and stopped["signal"] == signal.Signals(sig).name
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["latest", f"step_{step:08d}"]

    summary = pretrain(make_cfg(*COMMON), run, resume=True)
    assert summary["steps_run"] == 40 - step
    assert not (run / "stopped.json").exists()
    assert_same_losses(uninterrupted, run)


def test_ctrl_c_ends_with_one_line_and_a_resumable_checkpoint(tmp_path, tiny_overrides, make_cfg, uninterrupted):
    run = tmp_path / "run"
    rc, err = run_and_signal(["pretrain", "demo", *tiny_overrides, *COMMON, "--out", str(run)], signal.SIGINT)
    assert rc == 75, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    lines = [x for x in err.splitlines() if x.startswith("maskdistill:")]
    assert len(lines) == 1 and lines[0].startswith("maskdistill: interrupted: SIGINT received: stopped after step")
    step = _stopped_step(run)
    pretrain(make_cfg(*COMMON), run, resume=True)
    assert_same_losses(uninterrupted, run)
    assert step < 40
