"""DDP: 2 processes on CPU with gloo, launched by torchrun
through the ``maskdistill`` CLI, give the same per-step losses and final weights as 1 process with
the same global batch -- also with gradient accumulation, where all but the last micro-batch
skip the gradient all-reduce (``no_sync``)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from helpers.checkpoints import latest_weights
from maskdistill.runs.metrics import read_metrics
from maskdistill.train.pretrain import pretrain

pytestmark = pytest.mark.slow

# One torchrun launch runs both jobs, so the 2 processes start (import torch, timm) only once.
SCRIPT = textwrap.dedent("""
    import sys
    from maskdistill.cli import main
    out, overrides = sys.argv[1], sys.argv[2:]
    for accum in (1, 2):
        rc = main(["pretrain", "demo", *overrides, f"train.accum_steps={accum}",
                   "--out", f"{out}/accum{accum}"])
        if rc:
            sys.exit(rc)
""")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _torchrun(tmp_path: Path, overrides) -> subprocess.CompletedProcess:
    script = tmp_path / "ddp_job.py"
    script.write_text(SCRIPT)
    env = dict(os.environ, MASTER_ADDR="127.0.0.1", OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_PORT"):
        env.pop(k, None)
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nnodes=1",
        "--nproc_per_node=2",
        "--master_addr=127.0.0.1",
        f"--master_port={_free_port()}",
        str(script),
        str(tmp_path / "ddp"),
        *overrides,
    ]
    return subprocess.run(cmd, env=env, cwd=str(tmp_path), capture_output=True, text=True, timeout=240)


def test_two_gloo_processes_match_one_process(tmp_path, make_cfg, tiny_overrides):
    extra = ["train.max_steps=4", "train.ckpt_every=2"]  # drop path off: ranks share one RNG stream
    proc = _torchrun(tmp_path, tiny_overrides + extra)
    assert proc.returncode == 0, proc.stderr[-4000:]

    single = tmp_path / "single"
    pretrain(make_cfg(*extra), single)
    ref = read_metrics(single / "metrics.csv")
    ref_w = latest_weights(single)
    assert [r["step"] for r in ref] == [1, 2, 3, 4]

    for accum in (1, 2):
        run = tmp_path / "ddp" / f"accum{accum}"
        rows = read_metrics(run / "metrics.csv")  # written by rank 0 only: one row per step
        assert [r["step"] for r in rows] == [1, 2, 3, 4], f"accum={accum}"
        for r, s in zip(rows, ref):
            assert r["loss"] == pytest.approx(s["loss"], abs=1e-5), (accum, r, s)
            assert r["grad_norm"] == pytest.approx(s["grad_norm"], rel=1e-4, abs=1e-6), (accum, r, s)
            assert r["lr"] == s["lr"]
        w = latest_weights(run)
        assert sorted(w) == sorted(ref_w)
        for k in ref_w:
            torch.testing.assert_close(w[k], ref_w[k], rtol=0, atol=1e-5, msg=f"{k} (accum={accum})")
        # Only rank 0 writes: one set of checkpoints, no leftovers from a second writer.
        assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["latest", "step_00000002", "step_00000004"]
