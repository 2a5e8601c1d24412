"""One training loop for every job (masked-distillation pre-training, paper Sec. 2; the demo's
supervised teacher; fine-tuning, Sec. 4; the VQ-KD tokenizer, Sec. 5): the task module returns
``{"loss": ...}`` and the loop does the rest -- AdamW, per-step cosine schedule (Table 1), gradient
accumulation and clipping, bf16 autocast on CUDA, optional torch.compile, DDP, checkpoints with exact
resume, evaluation, callbacks, metrics and a progress bar (MAE's model/engine split).

``run`` is a sequence of named steps: open the loop (restore, wrap, batch), then per optimizer step
train (accumulate, check, clip, step), record, evaluate, log and checkpoint. A stop signal
(``train/signals.py``) ends the loop after the step it arrived in, with a checkpoint at that step;
under DDP every process learns of it in the step's own all-reduce, so all stop at the same step."""

from __future__ import annotations

import contextlib
import logging
import math
import time
from pathlib import Path
from typing import Dict

import torch

from maskdistill.data.pipeline import sample_seed
from maskdistill.errors import RunStopped
from maskdistill.models.modes import eval_mode
from maskdistill.parallel.collectives import sum_across
from maskdistill.parallel.group import Dist
from maskdistill.runs.checkpoint import save_checkpoint
from maskdistill.runs.verify import newest_verified
from maskdistill.train.callbacks import due
from maskdistill.train.graceful import announce, stop_gracefully
from maskdistill.train.job import Job
from maskdistill.train.loop_setup import LoopRun, open_loop
from maskdistill.train.optim import cosine_lr, set_lr
from maskdistill.train.signals import StopRequest

log = logging.getLogger(__name__)


class NonFiniteLossError(RunStopped):
    """The loss became NaN or infinite; nothing was saved after the last good checkpoint."""


class CorruptDataError(RunStopped):
    """More corrupt images than ``data.max_corrupt_share`` allows."""


def autocast_for(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    bf16 = precision == "bf16" or (precision == "auto" and device.type == "cuda")
    return torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()


def _accumulate(lp: LoopRun) -> float:
    """Forward and backward over ``accum_steps`` micro-batches (DDP syncs gradients on the last one
    only); returns the loss averaged over micro-batches and processes, and counts skipped images."""
    tr, dist = lp.job.train, lp.dist
    loss_sum = torch.zeros((), device=lp.device)
    for a in range(tr.accum_steps):
        batch = next(lp.batches)
        inputs = [batch[k].to(lp.device, non_blocking=True) for k in lp.job.batch_keys]
        sync = a == tr.accum_steps - 1 or not dist.enabled
        with contextlib.nullcontext() if sync else lp.model.no_sync(), autocast_for(lp.device, tr.precision):
            loss = lp.model(*inputs)["loss"]
            (loss / tr.accum_steps).backward()
        loss_sum += loss.detach().float()
        lp.bad += int(batch["bad"].sum())
    asked = float(lp.stop_request is not None and lp.stop_request.signum is not None)
    counts = sum_across(torch.tensor([loss_sum.item(), lp.bad, asked], dtype=torch.float64), dist)
    lp.bad_total = counts[1].item()  # unreadable images skipped so far, all processes
    lp.stopping = counts[2].item() > 0  # a stop signal reached some process: all stop after this step
    lp.seen += tr.batch_size
    return counts[0].item() / (tr.accum_steps * dist.world)


def _stop_non_finite(run_dir: Path, what: str) -> None:
    # Only a checkpoint whose checksums verify is called good: a damaged one may be what made the NaN.
    prev = newest_verified(run_dir)
    raise NonFiniteLossError(
        f"{what}; training stopped before the optimizer step. Last verified checkpoint: "
        f"{prev or 'none'} (kept). Lower optim.lr, enable optim.clip_grad, or check the data."
    )


def _check_loss_and_data(lp: LoopRun, step: int, loss_value: float) -> None:
    """Stop before the optimizer step on a non-finite loss or too many unreadable images."""
    job = lp.job
    if not math.isfinite(loss_value):
        _stop_non_finite(job.run_dir, f"the loss is {loss_value} at step {step + 1}")
    if lp.bad_total > job.max_corrupt_share * lp.seen:
        raise CorruptDataError(
            f"{int(lp.bad_total)} unreadable images among {lp.seen} read "
            f"(more than data.max_corrupt_share={job.max_corrupt_share}); "
            f"remove or fix them (the log names each)."
        )


def _clip(lp: LoopRun, step: int, loss_value: float) -> float:
    clip = lp.job.optim.clip_grad
    grad_norm = float(torch.nn.utils.clip_grad_norm_(lp.params, clip if clip else float("inf")))
    if not math.isfinite(grad_norm):  # a finite loss with inf/NaN gradients would poison the weights,
        # and the next checkpoint would not be a good one
        _stop_non_finite(lp.job.run_dir, f"the gradient norm is {grad_norm} at step {step + 1} (loss {loss_value})")
    return grad_norm


def _train_step(lp: LoopRun, step: int) -> Dict[str, float]:
    """One optimizer step (0-based ``step``): schedule, seeding, accumulation, checks, clipping,
    AdamW; returns its metrics row."""
    tr, op = lp.job.train, lp.job.optim
    _, total, warmup, _ = lp.plan
    lr = cosine_lr(step, total, warmup, op.lr, op.min_lr)
    set_lr(lp.optimizer, lr)
    # The model's own randomness (drop path, dropout) is seeded per (process, step): every process
    # draws different masks, and a resumed run draws what an uninterrupted one would.
    torch.manual_seed(sample_seed(tr.seed, lp.dist.rank, step, 0xD20B))
    tick = time.perf_counter()
    loss_value = _accumulate(lp)
    _check_loss_and_data(lp, step, loss_value)
    grad_norm = _clip(lp, step, loss_value)
    lp.optimizer.step()
    lp.optimizer.zero_grad(set_to_none=True)
    if lp.job.after_step is not None:
        lp.job.after_step(step + 1)
    dt = time.perf_counter() - tick
    return {
        "step": step + 1,
        "epoch": (step + 1) / lp.spe,
        "loss": loss_value,
        "lr": lr,
        "grad_norm": grad_norm,
        "img_per_s": tr.batch_size / dt,
    }


def _record(lp: LoopRun, row: Dict[str, float]) -> None:
    """Write the step's row, advance the bar and the callbacks' state, and run the callbacks that are
    due, in eval mode."""
    lp.last = row
    lp.metrics.write(row)
    lp.bar.update(1)
    lp.bar.set_postfix(loss=f"{row['loss']:.4f}", img_s=f"{row['img_per_s']:.0f}")
    done = int(row["step"])
    lp.state.step, lp.state.epoch, lp.state.metrics = done, done / lp.spe, row
    for cb in lp.callbacks:
        if due(cb, done, lp.stop):
            with eval_mode(lp.task):
                cb.on_step_end(lp.state)


def _eval_due(lp: LoopRun, done: int) -> bool:
    job = lp.job
    return job.evaluate is not None and ((job.eval_every and done % job.eval_every == 0) or done == lp.stop)


def _evaluate(lp: LoopRun, done: int) -> None:
    """Evaluate the task (eval mode, no gradients), log and write the result, tell the callbacks
    and ``on_eval``; the result joins the last row as ``eval_<name>``."""
    job = lp.job
    with eval_mode(lp.task), torch.no_grad(), autocast_for(lp.device, job.train.precision):
        ev = job.evaluate(lp.task)
    ev = {k: float(v) for k, v in ev.items()}
    lp.eval_writer.write({"step": done, "epoch": done / lp.spe, **ev})
    if lp.dist.main:
        log.info("eval at step %d: %s", done, "  ".join(f"{k} {v:.4f}" for k, v in ev.items()))
    for cb in lp.callbacks:
        cb.on_eval_end(lp.state, ev)
    if job.on_eval is not None and lp.dist.main:
        job.on_eval(done, ev)
    lp.last = dict(lp.last, **{f"eval_{k}": v for k, v in ev.items()})


def _log_progress(lp: LoopRun, done: int) -> None:
    """Every ``log_every`` steps, a log line with the eta (when no progress bar is drawn)."""
    if not (lp.dist.main and done % lp.job.train.log_every == 0 and lp.bar.disable):
        return
    eta = (time.perf_counter() - lp.t0) / (done - lp.start) * (lp.stop - done)
    log.info(
        "step %d/%d  loss %.4f  lr %.2e  %.0f img/s  eta %.0fs",
        done,
        lp.stop,
        lp.last["loss"],
        lp.last["lr"],
        lp.last["img_per_s"],
        eta,
    )


def _checkpoint(lp: LoopRun, done: int, now: bool = False) -> None:
    """Every ``ckpt_every`` steps and at the last one (or ``now``), on the main process."""
    job, tr = lp.job, lp.job.train
    if not (now or done % tr.ckpt_every == 0 or done == lp.stop) or not lp.dist.main:
        return
    if lp.ck_dir is not None and lp.ck_dir.name == f"step_{done:08d}":
        return  # this step is saved already
    lp.ck_dir = save_checkpoint(
        job.run_dir,
        done,
        lp.task,
        lp.optimizer,
        dict(job.meta, epoch=done / lp.spe, total_steps=lp.plan[1]),
        job.backbone() if job.backbone else None,
        tr.keep_last,
    )


def run(job: Job, device: torch.device, dist: Dist, resume: bool = False) -> Dict[str, float]:
    """Train ``job.task`` on ``device``; returns a summary (last loss, steps, images/s)."""
    with StopRequest() as stop_request:
        return _run(job, device, dist, resume, stop_request)


def _run(job: Job, device: torch.device, dist: Dist, resume: bool, stop_request: StopRequest) -> Dict[str, float]:
    lp = open_loop(job, device, dist, resume)
    lp.stop_request = stop_request
    try:
        for cb in lp.callbacks:
            cb.on_train_start(lp.state)
        lp.batches = iter(lp.loader)
        lp.t0 = time.perf_counter()
        for step in range(lp.start, lp.stop):
            _record(lp, _train_step(lp, step))
            if _eval_due(lp, step + 1):
                _evaluate(lp, step + 1)
            _log_progress(lp, step + 1)
            early = lp.stopping and step + 1 < lp.stop
            if early:
                announce(lp, step + 1)
            _checkpoint(lp, step + 1, now=early)
            if early:
                stop_gracefully(lp, step + 1)
        for cb in lp.callbacks:
            cb.on_train_end(lp.state)
    finally:
        lp.close()
    elapsed = time.perf_counter() - lp.t0
    return dict(
        lp.last,
        steps_run=lp.stop - lp.start,
        seconds=elapsed,
        skipped_images=int(lp.bad_total),
        checkpoint=str(lp.ck_dir) if lp.ck_dir else "",
        img_per_s_mean=(lp.stop - lp.start) * job.train.batch_size / max(elapsed, 1e-9),
    )


__all__ = ["run", "autocast_for", "NonFiniteLossError", "CorruptDataError"]
