"""A small callback interface on the training loop, so that probes can measure a model while it
trains (sharpness and the Hessian trace during fine-tuning, paper Fig. 7c/7f).

A callback sees a ``LoopState``: the task module (unwrapped from DDP/compile), the step, a fixed
batch that is the same at every call and across resumes, and ``log`` to write its own metrics
(``<run>/metrics_<group>.csv``, TensorBoard and W&B). Callbacks run on the main process only,
unless they say ``all_ranks = True``: such a callback runs on every process of a DDP job (it takes
part in collectives, e.g. a data-parallel Hessian over the fixed batch) and ``log`` writes from the
main process alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Optional

import torch
from torch import nn

from maskdistill.parallel.group import SINGLE, Dist
from maskdistill.runs.metrics import MetricsWriter


@dataclass
class LoopState:
    model: nn.Module  # the task module: ``model(*batch) -> {"loss": ...}``; ``.model`` is the timm network
    step: int  # optimizer steps done
    epoch: float
    run_dir: Path
    device: torch.device
    metrics: Dict[str, float] = field(default_factory=dict)  # last training (or evaluation) metrics
    _fixed_batch: Optional[Callable[[], Dict[str, torch.Tensor]]] = None
    _writers: Dict[str, MetricsWriter] = field(default_factory=dict)
    _resume_step: Optional[int] = None
    _wandb: Optional[Any] = None  # the run's WandbLogger, if log.wandb is on
    _cache: Dict[str, Any] = field(default_factory=dict)
    dist: Dist = SINGLE  # the job's processes (a callback with all_ranks runs on each)

    def fixed_batch(self) -> Dict[str, torch.Tensor]:
        """The same batch at every call (built once, on the device)."""
        if "batch" not in self._cache:
            if self._fixed_batch is None:
                raise RuntimeError("this job provides no fixed batch for callbacks.")
            self._cache["batch"] = {
                k: v.to(self.device) if torch.is_tensor(v) else v for k, v in self._fixed_batch().items()
            }
        return self._cache["batch"]

    def log(self, values: Dict[str, float], group: str = "callbacks") -> None:
        """Append ``values`` (with this step and epoch) to ``metrics_<group>.csv`` and TensorBoard
        (the main process writes; the others' calls are no-ops)."""
        if not self.dist.main:
            return
        if group not in self._writers:
            self._writers[group] = MetricsWriter(
                self.run_dir, resume_step=self._resume_step, name=f"metrics_{group}", tb_prefix=group, wandb=self._wandb
            )
        self._writers[group].write({"step": self.step, "epoch": self.epoch, **values})

    def close(self) -> None:
        for w in self._writers.values():
            w.close()


class Callback:
    """Override what you need. ``every``: call ``on_step_end`` every this many steps (and at the
    last step); 0 = never."""

    every: int = 1
    all_ranks: bool = False  # run on every DDP process (collectives inside), not on the main one alone

    def on_train_start(self, state: LoopState) -> None:
        pass

    def on_step_end(self, state: LoopState) -> None:
        pass

    def on_eval_end(self, state: LoopState, metrics: Dict[str, float]) -> None:
        pass

    def on_train_end(self, state: LoopState) -> None:
        pass


def due(cb: Callback, step: int, last_step: int) -> bool:
    return cb.every > 0 and (step % cb.every == 0 or step == last_step)


__all__ = ["Callback", "LoopState", "due"]
