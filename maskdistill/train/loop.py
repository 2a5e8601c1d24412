"""One training loop for every job (pre-training, the demo's supervised teacher, fine-tuning later):
the task module returns ``{"loss": ...}`` and the loop does the rest -- AdamW, per-step cosine
schedule, gradient accumulation and clipping, bf16 autocast on CUDA, optional torch.compile, DDP,
checkpoints with exact resume, metrics and a progress bar (MAE's model/engine split)."""

from __future__ import annotations

import contextlib
import logging
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Sequence, Tuple

import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from maskdistill.config import OptimConfig, TrainConfig
from maskdistill.data.pipeline import SeededSamples, StepBatchSampler, sample_seed
from maskdistill.errors import RunStopped
from maskdistill.runs.checkpoint import find_checkpoint, load_checkpoint, save_checkpoint
from maskdistill.runs.metrics import MetricsWriter
from maskdistill.train.callbacks import Callback, LoopState, due
from maskdistill.train.distributed import Dist, sum_across
from maskdistill.train.optim import build_optimizer, cosine_lr, set_lr

log = logging.getLogger(__name__)


class NonFiniteLossError(RunStopped):
    """The loss became NaN or infinite; nothing was saved after the last good checkpoint."""


class CorruptDataError(RunStopped):
    """More corrupt images than ``data.max_corrupt_share`` allows."""


@dataclass
class Job:
    """What the loop needs besides the task module."""

    task: nn.Module
    batch_keys: Tuple[str, ...]  # task(*[batch[k] for k in batch_keys])
    dataset: SeededSamples
    optim: OptimConfig
    train: TrainConfig
    run_dir: Path
    meta: Dict[str, Any]  # written into every checkpoint (config, kind, ...)
    backbone: Optional[Callable[[], Tuple[nn.Module, Dict[str, Any]]]] = None
    num_workers: int = 0
    max_corrupt_share: float = 0.01
    callbacks: Sequence[Callback] = ()
    # A batch that is the same at every call (for callbacks: sharpness on a fixed batch, Fig. 7c/f).
    fixed_batch: Optional[Callable[[], Dict[str, torch.Tensor]]] = None
    # Evaluation every ``eval_every`` steps and at the end: ``evaluate(task) -> {"top1": ...}``, run
    # in eval mode without gradients; ``on_eval(step, metrics)`` runs before that step's checkpoint.
    evaluate: Optional[Callable[[nn.Module], Dict[str, float]]] = None
    eval_every: int = 0
    on_eval: Optional[Callable[[int, Dict[str, float]], None]] = None
    # Optimizer parameter groups (e.g. layer-wise lr decay: each group's ``lr_scale`` multiplies the
    # scheduled lr); None = AdamW with the usual no-decay set over every trainable parameter.
    param_groups: Optional[Callable[[], list]] = None
    after_step: Optional[Callable[[int], None]] = None  # after each optimizer step (EMA update)


def _stop_non_finite(run_dir: Path, what: str) -> None:
    prev = find_checkpoint(run_dir) if (Path(run_dir) / "checkpoints").exists() else None
    raise NonFiniteLossError(
        f"{what}; training stopped before the optimizer step. Last good checkpoint: "
        f"{prev or 'none yet'} (kept). Lower optim.lr, enable optim.clip_grad, or check the data."
    )


def autocast_for(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    bf16 = precision == "bf16" or (precision == "auto" and device.type == "cuda")
    return torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()


@contextlib.contextmanager
def _eval_mode(task: nn.Module):
    """Eval mode for a callback or an evaluation, train mode again afterwards (even on errors)."""
    task.eval()
    try:
        yield
    finally:
        task.train()


def plan_steps(n: int, train: TrainConfig, optim: OptimConfig) -> Tuple[int, int, int, int]:
    """(steps per epoch, total schedule steps, warm-up steps, steps to run now)."""
    spe = n // train.batch_size
    total = max(1, round(train.epochs * spe))
    warmup = min(total - 1, round(optim.warmup_epochs * spe))
    stop = min(total, train.max_steps) if train.max_steps else total
    return spe, total, warmup, stop


def run(job: Job, device: torch.device, dist: Dist, resume: bool = False) -> Dict[str, float]:
    """Train ``job.task`` on ``device``; returns a summary (last loss, steps, images/s)."""
    tr, op = job.train, job.optim
    task = job.task.to(device).train()  # a task handed over in eval mode would train without drop path
    spe, total, warmup, stop = plan_steps(len(job.dataset), tr, op)
    optimizer = build_optimizer(task, op, job.param_groups() if job.param_groups else None)
    start = 0
    if resume:
        ck = find_checkpoint(job.run_dir)
        start = int(load_checkpoint(ck, task, optimizer)["step"])
        if dist.main:
            log.info("resumed from %s at step %d", ck, start)
    model: nn.Module = task
    if dist.enabled:
        model = nn.parallel.DistributedDataParallel(task, device_ids=[device.index] if device.type == "cuda" else None)
    if tr.compile:
        model = torch.compile(model)
    sampler = StepBatchSampler(
        len(job.dataset), tr.batch_size, tr.seed, dist.rank, dist.world, tr.accum_steps, start_step=start
    )
    # The loader gets its own generator: creating its iterator would otherwise draw a seed from the
    # global RNG, after a resume has restored it, and shift every later drop-path draw (exact resume).
    loader = DataLoader(
        job.dataset,
        batch_sampler=sampler,
        num_workers=job.num_workers,
        pin_memory=device.type == "cuda",
        persistent_workers=job.num_workers > 0,
        generator=torch.Generator().manual_seed(tr.seed),
    )
    metrics = MetricsWriter(job.run_dir, enabled=dist.main, resume_step=start if resume else None)
    params = [p for p in task.parameters() if p.requires_grad]
    bar = tqdm(
        total=stop, initial=start, disable=not dist.main or not sys.stderr.isatty(), unit="step", dynamic_ncols=True
    )
    state = LoopState(
        task,
        start,
        start / max(spe, 1),
        Path(job.run_dir),
        device,
        _fixed_batch=job.fixed_batch,
        _resume_step=start if resume else None,
    )
    callbacks = list(job.callbacks) if dist.main else []
    eval_writer = MetricsWriter(
        job.run_dir,
        enabled=dist.main and job.evaluate is not None,
        resume_step=start if resume else None,
        name="metrics_eval",
        tb_prefix="eval",
    )
    for cb in callbacks:
        cb.on_train_start(state)
    it = iter(loader)
    seen = bad = 0
    bad_total = 0.0
    last: Dict[str, float] = {}
    t0 = time.perf_counter()
    ck_dir: Optional[Path] = None
    try:
        for step in range(start, stop):
            lr = cosine_lr(step, total, warmup, op.lr, op.min_lr)
            set_lr(optimizer, lr)
            # The model's own randomness (drop path, dropout) is seeded per (process, step): every
            # process draws different masks, and a resumed run draws what an uninterrupted one would.
            torch.manual_seed(sample_seed(tr.seed, dist.rank, step, 0xD20B))
            tick = time.perf_counter()
            loss_sum = torch.zeros((), device=device)
            for a in range(tr.accum_steps):
                batch = next(it)
                inputs = [batch[k].to(device, non_blocking=True) for k in job.batch_keys]
                sync = a == tr.accum_steps - 1 or not dist.enabled
                with contextlib.nullcontext() if sync else model.no_sync(), autocast_for(device, tr.precision):
                    loss = model(*inputs)["loss"]
                    (loss / tr.accum_steps).backward()
                loss_sum += loss.detach().float()
                bad += int(batch["bad"].sum())
            counts = sum_across(torch.tensor([loss_sum.item(), bad], dtype=torch.float64), dist)
            bad_total = counts[1].item()  # unreadable images skipped so far, all processes
            loss_value = counts[0].item() / (tr.accum_steps * dist.world)
            seen += tr.batch_size
            if not math.isfinite(loss_value):
                _stop_non_finite(job.run_dir, f"the loss is {loss_value} at step {step + 1}")
            if counts[1].item() > job.max_corrupt_share * seen:
                raise CorruptDataError(
                    f"{int(counts[1].item())} unreadable images among {seen} read "
                    f"(more than data.max_corrupt_share={job.max_corrupt_share}); "
                    f"remove or fix them (the log names each)."
                )
            grad_norm = torch.nn.utils.clip_grad_norm_(params, op.clip_grad if op.clip_grad else float("inf"))
            if not math.isfinite(float(grad_norm)):  # a finite loss with inf/NaN gradients would
                # poison the weights, and the next checkpoint would not be a good one
                _stop_non_finite(
                    job.run_dir, f"the gradient norm is {float(grad_norm)} at step {step + 1} (loss {loss_value})"
                )
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            if job.after_step is not None:
                job.after_step(step + 1)
            dt = time.perf_counter() - tick
            last = {
                "step": step + 1,
                "epoch": (step + 1) / spe,
                "loss": loss_value,
                "lr": lr,
                "grad_norm": float(grad_norm),
                "img_per_s": tr.batch_size / dt,
            }
            metrics.write(last)
            bar.update(1)
            bar.set_postfix(loss=f"{loss_value:.4f}", img_s=f"{last['img_per_s']:.0f}")
            state.step, state.epoch, state.metrics = step + 1, (step + 1) / spe, last
            for cb in callbacks:
                if due(cb, step + 1, stop):
                    with _eval_mode(task):
                        cb.on_step_end(state)
            if job.evaluate is not None and ((job.eval_every and (step + 1) % job.eval_every == 0) or step + 1 == stop):
                with _eval_mode(task), torch.no_grad(), autocast_for(device, tr.precision):
                    ev = job.evaluate(task)
                ev = {k: float(v) for k, v in ev.items()}
                eval_writer.write({"step": step + 1, "epoch": (step + 1) / spe, **ev})
                if dist.main:
                    log.info("eval at step %d: %s", step + 1, "  ".join(f"{k} {v:.4f}" for k, v in ev.items()))
                for cb in callbacks:
                    cb.on_eval_end(state, ev)
                if job.on_eval is not None and dist.main:
                    job.on_eval(step + 1, ev)
                last = dict(last, **{f"eval_{k}": v for k, v in ev.items()})
            if dist.main and (step + 1) % tr.log_every == 0 and bar.disable:
                eta = (time.perf_counter() - t0) / (step + 1 - start) * (stop - step - 1)
                log.info(
                    "step %d/%d  loss %.4f  lr %.2e  %.0f img/s  eta %.0fs",
                    step + 1,
                    stop,
                    loss_value,
                    lr,
                    last["img_per_s"],
                    eta,
                )
            if (step + 1) % tr.ckpt_every == 0 or step + 1 == stop:
                if dist.main:
                    ck_dir = save_checkpoint(
                        job.run_dir,
                        step + 1,
                        task,
                        optimizer,
                        dict(job.meta, epoch=(step + 1) / spe, total_steps=total),
                        job.backbone() if job.backbone else None,
                        tr.keep_last,
                    )
        for cb in callbacks:
            cb.on_train_end(state)
    finally:
        bar.close()
        metrics.close()
        eval_writer.close()
        state.close()
    elapsed = time.perf_counter() - t0
    return dict(
        last,
        steps_run=stop - start,
        seconds=elapsed,
        skipped_images=int(bad_total),
        checkpoint=str(ck_dir) if ck_dir else "",
        img_per_s_mean=(stop - start) * tr.batch_size / max(elapsed, 1e-9),
    )
