"""Everything the training loop sets up before its first step (``train.loop.run``), in the order
that exact resume relies on: the task in train mode, the optimizer, the restored checkpoint (model,
optimizer, RNG), the DDP/compile wrapper, the step-wise batch sampler with its own generator, the
metrics writers, the progress bar and the callbacks' view of the loop."""

from __future__ import annotations

import logging
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple

import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from maskdistill.data.pipeline import StepBatchSampler
from maskdistill.parallel.group import Dist
from maskdistill.runs.checkpoint import find_checkpoint, load_checkpoint
from maskdistill.runs.metrics import MetricsWriter
from maskdistill.runs.wandb_log import open_wandb
from maskdistill.train.callbacks import Callback, LoopState
from maskdistill.train.job import Job, plan_steps
from maskdistill.train.optim import build_optimizer
from maskdistill.train.signals import ignore_stop_signals

log = logging.getLogger(__name__)


@dataclass
class LoopRun:
    """One run of the loop: the task and the module that trains it (DDP/compile), the optimizer,
    the schedule, the batches, the writers and the running counters."""

    job: Job
    device: torch.device
    dist: Dist
    task: nn.Module
    model: nn.Module
    optimizer: torch.optim.Optimizer
    plan: Tuple[int, int, int, int]  # plan_steps: per epoch, total, warm-up, stop
    start: int
    loader: DataLoader
    metrics: MetricsWriter
    eval_writer: MetricsWriter
    bar: Any  # tqdm
    state: LoopState
    callbacks: List[Callback]
    params: List[nn.Parameter] = field(default_factory=list)
    batches: Optional[Iterator[Dict[str, torch.Tensor]]] = None
    seen: int = 0  # images read so far by all processes (the global batch of every step)
    bad: int = 0  # unreadable images this process skipped
    bad_total: float = 0.0  # ... all processes
    last: Dict[str, float] = field(default_factory=dict)
    ck_dir: Optional[Path] = None
    t0: float = 0.0
    wandb: Optional[Any] = None  # runs.wandb_log.WandbLogger when log.wandb is on (main process)
    stop_request: Any = None  # train.signals.StopRequest of the loop
    stopping: bool = False  # a stop signal reached some process during the current step

    @property
    def spe(self) -> int:
        return self.plan[0]

    @property
    def stop(self) -> int:
        return self.plan[3]

    def close(self) -> None:
        self.bar.close()
        self.metrics.close()
        self.eval_writer.close()
        self.state.close()
        if self.wandb is not None:
            self.wandb.close()


def _restore(job: Job, task: nn.Module, optimizer: torch.optim.Optimizer, dist: Dist, resume: bool) -> int:
    """The step to start from: 0, or the latest checkpoint's (model, optimizer and RNG restored)."""
    if not resume:
        return 0
    ck = find_checkpoint(job.run_dir)  # the newest that verifies
    start = int(load_checkpoint(ck, task, optimizer)["step"])
    if dist.main:
        set_aside_newer(ck)
        log.info("resumed from %s at step %d", ck, start)
    return start


def set_aside_newer(ck: Path) -> None:
    """Rename the checkpoints newer than ``ck`` (they failed verification) to ``damaged_step_*``:
    kept for inspection, out of the way of the steps the resumed run saves again."""
    for p in sorted(ck.parent.glob("step_*")):
        if p.is_dir() and p.name > ck.name:
            target = p.with_name("damaged_" + p.name)
            shutil.rmtree(target, ignore_errors=True)
            p.rename(target)
            log.warning("set aside the damaged checkpoint %s as %s", p, target.name)


def _wrap(task: nn.Module, device: torch.device, dist: Dist, compile: bool) -> nn.Module:
    model: nn.Module = task
    if dist.enabled:
        model = nn.parallel.DistributedDataParallel(task, device_ids=[device.index] if device.type == "cuda" else None)
    return torch.compile(model) if compile else model


def _loader(job: Job, device: torch.device, dist: Dist, start: int) -> DataLoader:
    tr = job.train
    sampler = StepBatchSampler(
        len(job.dataset), tr.batch_size, tr.seed, dist.rank, dist.world, tr.accum_steps, start_step=start
    )
    # The loader gets its own generator: creating its iterator would otherwise draw a seed from the
    # global RNG, after a resume has restored it, and shift every later drop-path draw (exact resume).
    return DataLoader(
        job.dataset,
        batch_sampler=sampler,
        num_workers=job.num_workers,
        pin_memory=device.type == "cuda",
        persistent_workers=job.num_workers > 0,
        worker_init_fn=ignore_stop_signals if job.num_workers > 0 else None,
        generator=torch.Generator().manual_seed(tr.seed),
    )


def open_loop(job: Job, device: torch.device, dist: Dist, resume: bool) -> LoopRun:
    """Everything before the first step, in the order that exact resume relies on."""
    task = job.task.to(device).train()  # a task handed over in eval mode would train without drop path
    plan = plan_steps(len(job.dataset), job.train, job.optim)
    optimizer = build_optimizer(task, job.optim, job.param_groups() if job.param_groups else None)
    start = _restore(job, task, optimizer, dist, resume)
    model = _wrap(task, device, dist, job.train.compile)
    loader = _loader(job, device, dist, start)
    resume_step = start if resume else None
    wb = open_wandb(job.run_dir, job.log, job.meta.get("config", {}), resume) if dist.main else None
    metrics = MetricsWriter(job.run_dir, enabled=dist.main, resume_step=resume_step, wandb=wb)
    params = [p for p in task.parameters() if p.requires_grad]
    bar = tqdm(
        total=plan[3], initial=start, disable=not dist.main or not sys.stderr.isatty(), unit="step", dynamic_ncols=True
    )
    state = LoopState(
        task,
        start,
        start / max(plan[0], 1),
        Path(job.run_dir),
        device,
        _fixed_batch=job.fixed_batch,
        _resume_step=resume_step,
        _wandb=wb,
        dist=dist,
    )
    callbacks = [cb for cb in job.callbacks if dist.main or getattr(cb, "all_ranks", False)]
    eval_writer = MetricsWriter(
        job.run_dir,
        enabled=dist.main and job.evaluate is not None,
        resume_step=resume_step,
        name="metrics_eval",
        tb_prefix="eval",
        wandb=wb,
    )
    return LoopRun(
        job=job,
        device=device,
        dist=dist,
        task=task,
        model=model,
        optimizer=optimizer,
        plan=plan,
        start=start,
        loader=loader,
        metrics=metrics,
        eval_writer=eval_writer,
        bar=bar,
        state=state,
        callbacks=callbacks,
        params=params,
        wandb=wb,
    )


__all__ = ["LoopRun", "open_loop"]
