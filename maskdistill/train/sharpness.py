"""Sharpness during fine-tuning (paper Sec. 4, Fig. 7c/7f): every ``every`` steps, the top Hessian
eigenvalue λ₁ (Lanczos) and Hutchinson's trace (deflated by the same Lanczos space,
``hessian_summary``) of the training loss with respect to the network's parameters, on the loop's
fixed batch, logged to ``<run>/metrics_sharpness.csv`` (group "sharpness") with the step and epoch.
The report plots |λ₁| (Fig. 7c) and the trace (Fig. 7f).

The loss is the task's own cross-entropy, with its label smoothing (logged as ``label_smoothing``),
on ``task.logits(images)`` (mixup is off in eval mode). The measurement never disturbs training: the
random vectors come from a private generator seeded with ``seed`` — the same vectors at every call,
so that changes between steps are not sampling noise — parameters are only read, ``.grad`` is not
written, and eval mode / fused attention are restored afterwards.

Under DDP (torchrun) the callback runs on every process: each holds its contiguous share of the
same fixed batch, every Hessian-vector product is the all-reduced sum of the shares' products
(:class:`~maskdistill.parallel.shards.RankBatches`), so Lanczos and Hutchinson run in lock-step and
log the values one process logs; the main process writes them. It measures the unwrapped task, so
DDP's gradient hooks never fire.
"""

from __future__ import annotations

import math
import warnings
from typing import Callable, Dict, Optional

import torch
import torch.nn.functional as F
from torch import nn

from maskdistill.parallel.group import SINGLE, Dist
from maskdistill.parallel.shards import RankBatches, shard_range
from maskdistill.probes.curvature.hessian import hessian_summary, top_eigenvalues
from maskdistill.probes.curvature.operands import ParamFilter
from maskdistill.train.callbacks import Callback, LoopState


class _Logits(nn.Module):
    """The task's classifier as ``module(images) -> logits``; its parameters are the timm network's,
    named ``net.<name>`` (the task itself, with e.g. an EMA copy, is kept out of the module tree)."""

    def __init__(self, task: nn.Module):
        super().__init__()
        self.net = task.model
        object.__setattr__(self, "_task", task)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self._task.logits(images).float()  # (B, classes)


def _under_net(params: ParamFilter) -> Callable[[str, nn.Parameter], bool]:
    """A filter on the timm network's own names (``"blocks.11"``) as a filter on ``net.<name>``."""

    def accept(name: str, p: nn.Parameter) -> bool:
        if not name.startswith("net."):
            return False
        inner = name[4:]
        if params is None:
            return True
        if isinstance(params, str):
            prefixes = [params]
        elif callable(params):
            return bool(params(inner, p))
        else:
            prefixes = list(params)
        return any(inner == s.rstrip(".") or inner.startswith(s.rstrip(".") + ".") for s in prefixes)

    return accept


class SharpnessCallback(Callback):
    """Log λ₁ (and λ₂… with ``k``) and the Hessian trace every ``every`` steps on the fixed batch."""

    all_ranks = True  # under DDP every process measures its share of the fixed batch

    def __init__(
        self,
        every: int = 100,
        k: int = 1,
        tol: float = 1e-3,
        max_iter: int = 100,
        trace: bool = True,
        trace_tol: float = 0.05,
        trace_max_iter: int = 100,
        seed: int = 0,
        params: ParamFilter = None,
        image_key: str = "image",
        label_key: str = "label",
        loss_fn: Optional[Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = None,
    ):
        if every < 0 or k < 1:
            raise ValueError(f"every={every}, k={k}: need every ≥ 0 (0 = never) and k ≥ 1.")
        self.every, self.k, self.tol, self.max_iter = int(every), int(k), tol, max_iter
        self.trace, self.trace_tol, self.trace_max_iter, self.seed = trace, trace_tol, trace_max_iter, seed
        self.params, self.image_key, self.label_key, self.loss_fn = params, image_key, label_key, loss_fn

    def measure(self, task: nn.Module, batch: Dict[str, torch.Tensor], world: Dist = SINGLE) -> Dict[str, float]:
        """The sharpness of ``task`` on ``batch``; with ``world``, on this process's contiguous share
        of it, the products all-reduced (every process must call it)."""
        if not hasattr(task, "logits") or not hasattr(task, "model"):
            raise TypeError(
                f"SharpnessCallback needs a classification task with .model and .logits(images) "
                f"(Classifier, FinetuneTask); got {type(task).__name__}."
            )
        smoothing = float(getattr(task, "label_smoothing", 0.0) or 0.0)
        loss_fn = self.loss_fn or (lambda out, y: F.cross_entropy(out, y, label_smoothing=smoothing))
        model, filt = _Logits(task), _under_net(self.params)
        x, y = batch[self.image_key], batch[self.label_key]
        mine = shard_range(int(x.shape[0]), world)
        share = [(x[mine.start : mine.stop], y[mine.start : mine.stop])] if len(mine) else []
        batches = RankBatches(share, world, [0] * len(share), 1)
        with warnings.catch_warnings():  # non-convergence is logged as a column, not warned every N steps
            warnings.simplefilter("ignore")
            lanczos = dict(k=self.k, tol=self.tol, max_iter=self.max_iter, params=filt, seed=self.seed)
            if self.trace:  # one operator; the Lanczos space also deflates the trace estimate
                eig, tr = hessian_summary(
                    model, loss_fn, batches, trace_tol=self.trace_tol, trace_max_iter=self.trace_max_iter, **lanczos
                )
            else:
                eig = top_eigenvalues(model, loss_fn, batches, **lanczos)
            out = {f"lambda_{i + 1}": v for i, v in enumerate(eig.eigenvalues)}
            out.update(
                abs_lambda_1=abs(eig.eigenvalues[0]),
                lambda_converged=float(eig.converged),
                eig_products=float(eig.products),
                label_smoothing=smoothing,
                processes=float(world.world),  # that shared the products (the values do not depend on it)
            )
            if self.trace:
                out.update(
                    trace=tr.estimate,
                    trace_se=tr.se if math.isfinite(tr.se) else float("nan"),
                    trace_samples=float(tr.samples),
                    trace_converged=float(tr.converged),
                    products=float(tr.products),
                )
        return out

    def on_step_end(self, state: LoopState) -> None:
        state.log(self.measure(state.model, state.fixed_batch(), state.dist), group="sharpness")


__all__ = ["SharpnessCallback"]
