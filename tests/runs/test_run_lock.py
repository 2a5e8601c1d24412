"""One writer per run folder: while a run trains, a second process on its folder -- plain,
``--resume`` or ``--overwrite`` -- is refused, naming the live process; a lock left by a process
killed with ``kill -9`` does not block, and the start it broke (no checkpoint yet) is replaced by the
next plain start."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from maskdistill.runs.lock import LOCK, RunLockedError, acquire, check_unlocked
from maskdistill.runs.metrics import read_metrics
from maskdistill.train.pretrain import pretrain

REPO = Path(__file__).resolve().parents[2]
ENV = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")


def _holder(run: Path) -> subprocess.Popen:
    """A process that takes the folder's lock, says so, and sleeps."""
    code = (
        "import sys, time; from maskdistill.runs.lock import acquire; "
        "acquire(sys.argv[1]); print('locked', flush=True); time.sleep(120)"
    )
    proc = subprocess.Popen([sys.executable, "-c", code, str(run)], stdout=subprocess.PIPE, text=True, env=ENV)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
    return proc


def _kill9(proc: subprocess.Popen) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)


def test_a_live_lock_refuses_and_a_killed_holders_lock_is_taken_over(tmp_path, caplog):
    run = tmp_path / "run"
    proc = _holder(run)
    try:
        with pytest.raises(RunLockedError, match=rf"is being written by process {proc.pid} on "):
            check_unlocked(run)
        with pytest.raises(RunLockedError, match=rf"kill -TERM {proc.pid} saves a checkpoint"):
            acquire(run)
    finally:
        _kill9(proc)
    assert (run / LOCK).is_file()  # left behind by the killed process
    check_unlocked(run)
    with caplog.at_level(logging.INFO, logger="maskdistill.runs.lock"):
        lock = acquire(run)
    assert f"taking over the lock of process {proc.pid}" in caplog.text
    lock.release()
    assert not (run / LOCK).exists()


def test_a_second_writer_is_refused_while_the_first_trains(tmp_path, tiny_overrides, make_cfg, caplog):
    run = tmp_path / "run"
    long = ("train.epochs=1000", "train.ckpt_every=100000")
    argv = [sys.executable, "-m", "maskdistill", "pretrain", "demo", *tiny_overrides, *long, "--out", str(run)]
    proc = subprocess.Popen(argv, stderr=subprocess.PIPE, text=True, env=ENV, cwd=REPO)
    try:
        assert proc.stderr is not None
        for line in proc.stderr:
            if "step 2/" in line:
                break
        for how in ({}, {"resume": True}, {"overwrite": True}):
            with pytest.raises(RunLockedError) as err:
                pretrain(make_cfg(*long), run, **how)
            assert f"process {proc.pid}" in str(err.value) and "maskdistill pretrain" in str(err.value), how
        assert proc.poll() is None  # the first run goes on
        time.sleep(0.2)
    finally:
        _kill9(proc)
    # Killed before its first checkpoint: no run to keep, and its lock does not block a plain start.
    with caplog.at_level(logging.WARNING):
        pretrain(make_cfg("train.max_steps=3"), run)
    assert "replacing a start that stopped before its first checkpoint" in caplog.text
    assert [r["step"] for r in read_metrics(run / "metrics.csv")] == [1, 2, 3]
