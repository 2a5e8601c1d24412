"""The end of a run stopped by a signal (``train/signals.py``): the loop has finished the step and
written its checkpoint; the main process records the stop in ``<run>/stopped.json`` (the signal, the
step, the checkpoint: what a batch script reads to decide on requeueing, whatever exit code a
launcher such as torchrun reports), every process waits for it, and the command exits with the
resumable code."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

from maskdistill.errors import Interrupted
from maskdistill.parallel.group import barrier

log = logging.getLogger(__name__)

STOPPED = "stopped.json"


def _name(lp: Any) -> str:
    req = lp.stop_request
    return req.name if req is not None and req.signum is not None else "a stop signal (on another process)"


def announce(lp: Any, done: int) -> None:
    """Log, once, that the loop stops after step ``done`` (the signal handler itself only records)."""
    name = _name(lp)
    if lp.dist.main:
        again = " (Ctrl-C again stops at once, without one)" if name == "SIGINT" else ""
        log.warning("%s received: writing a checkpoint at step %d, then stopping%s", name, done, again)


def stop_gracefully(lp: Any, done: int) -> None:
    """Raise :class:`~maskdistill.errors.Interrupted` for the ``LoopRun`` ``lp`` stopped after step
    ``done`` (its checkpoint is written)."""
    req, name = lp.stop_request, _name(lp)
    run_dir = Path(lp.job.run_dir)
    if lp.dist.main:
        record = {"signal": name, "step": done, "total_steps": lp.plan[1], "checkpoint": str(lp.ck_dir)}
        (run_dir / STOPPED).write_text(json.dumps(dict(record, time=time.time()), indent=1))
    barrier(lp.dist)
    raise Interrupted(
        f"{name} received: stopped after step {done} of {lp.stop} with a checkpoint at that step "
        f"({run_dir / 'checkpoints' / f'step_{done:08d}'}); run the same command with --resume to continue.",
        getattr(req, "signum", None) or 15,
        resumable=True,
    )


def clear_stopped(run_dir: str | Path) -> None:
    """A run that starts or resumes is no longer stopped."""
    (Path(run_dir) / STOPPED).unlink(missing_ok=True)


__all__ = ["STOPPED", "announce", "stop_gracefully", "clear_stopped"]
