"""What a training job hands the loop (pre-training, classification, fine-tuning, the VQ-KD
tokenizer: paper Secs. 2, 4, 5), and the step plan of a schedule given in epochs (Table 1: epochs,
warm-up epochs, batch size)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Sequence, Tuple

import torch
from torch import nn

from maskdistill.config import OptimConfig, TrainConfig
from maskdistill.data.pipeline import SeededSamples
from maskdistill.train.callbacks import Callback


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
    log: Optional[Any] = None  # the config's LogConfig: Weights & Biases besides CSV and TensorBoard


def plan_steps(n: int, train: TrainConfig, optim: OptimConfig) -> Tuple[int, int, int, int]:
    """(steps per epoch, total schedule steps, warm-up steps, steps to run now)."""
    spe = n // train.batch_size
    total = max(1, round(train.epochs * spe))
    warmup = min(total - 1, round(optim.warmup_epochs * spe))
    stop = min(total, train.max_steps) if train.max_steps else total
    return spe, total, warmup, stop


__all__ = ["Job", "plan_steps"]
