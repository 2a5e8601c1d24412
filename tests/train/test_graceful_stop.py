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


# Rank 1 alone is signalled, during the forward of step 3; rank 0 learns of it in that step's all-reduce.
DDP_SCRIPT = """
import os, signal, sys
from maskdistill.cli import main
from maskdistill.distill.distiller import MaskedDistiller
calls, original = [0], MaskedDistiller.forward
def forward(self, *args, **kwargs):
    calls[0] += 1
    if os.environ.get("RANK") == "1" and calls[0] == 3:
        os.kill(os.getpid(), signal.SIGUSR1)
    return original(self, *args, **kwargs)
MaskedDistiller.forward = forward
sys.exit(main(["pretrain", "demo", *sys.argv[2:], "--out", sys.argv[1]]))
"""


@pytest.mark.slow
def test_under_ddp_all_ranks_stop_after_the_same_step(tmp_path, tiny_overrides, make_cfg):
    import socket

    script = tmp_path / "stop_job.py"
    script.write_text(DDP_SCRIPT)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, PYTHONPATH=str(REPO), MASTER_ADDR="127.0.0.1", OMP_NUM_THREADS="1")
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_PORT"):
        env.pop(k, None)
    run = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes=1", "--nproc_per_node=2"]
    cmd += ["--master_addr=127.0.0.1", f"--master_port={port}", str(script), str(run), *tiny_overrides, *COMMON]
    proc = subprocess.run(cmd, env=env, cwd=str(tmp_path), capture_output=True, text=True, timeout=240)
    assert proc.returncode != 0  # torchrun reports a failure of its own; stopped.json tells the story
    assert proc.stderr.count("maskdistill: interrupted:") == 2, proc.stderr[-3000:]  # one line per rank
    assert f'File "{REPO / "maskdistill"}' not in proc.stderr  # torchrun's own traceback only
    assert json.loads((run / "stopped.json").read_text())["step"] == 3
    assert (run / "checkpoints" / "latest").read_text().strip() == "step_00000003"
    assert [r["step"] for r in rows(run)] == [1, 2, 3]
    summary = pretrain(make_cfg(*COMMON), run, resume=True)  # one process continues the run
    assert summary["steps_run"] == 37 and [r["step"] for r in rows(run)] == list(range(1, 41))


def test_a_sweep_stopped_by_a_signal_resumes_to_the_same_table(tmp_path, vit_file, monkeypatch):
    """SIGTERM during the second run of a sweep: the first stays finished, the second stops after
    its step with a checkpoint (exit 75 from the CLI); the same sweep again resumes it and gives the
    table of a sweep that was never stopped."""
    from helpers.finetune import TINY as FT_TINY
    from helpers.finetune import vit_spec
    from maskdistill.errors import Interrupted
    from maskdistill.train.finetune import FinetuneTask
    from maskdistill.train.sweep import run_sweep

    over = [*FT_TINY, *[o for o in vit_spec(Path("x")) if o.startswith("model.kwargs")]]
    models = {"vit": f"timm:vit_small_patch16_224@{vit_file}"}
    want = run_sweep("lr", "demo", models, tmp_path / "uninterrupted", ["1e-4", "3e-3"], over)

    calls, original = [0], FinetuneTask.forward

    def forward(self, *args, **kwargs):
        calls[0] += 1 if self.training else 0
        if self.training and calls[0] == 8:  # the second run's second step (6 steps per run)
            os.kill(os.getpid(), signal.SIGTERM)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(FinetuneTask, "forward", forward)
    out = tmp_path / "sweep"
    with pytest.raises(Interrupted) as err:
        run_sweep("lr", "demo", models, out, ["1e-4", "3e-3"], over)
    assert err.value.resumable and "SIGTERM received: stopped after step 2 of 6" in str(err.value)
    second = out / "vit" / "lr_0.003"
    assert json.loads((second / "stopped.json").read_text())["step"] == 2
    monkeypatch.setattr(FinetuneTask, "forward", original)
    got = run_sweep("lr", "demo", models, out, ["1e-4", "3e-3"], over)
    assert not (second / "stopped.json").exists()
    pd_cols = ["value", "top1", "top5", "best_top1", "epochs"]
    assert got[pd_cols].equals(want[pd_cols])
