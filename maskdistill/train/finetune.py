"""``maskdistill finetune``: image classification fine-tuning of any checkpoint or timm ViT with the
paper's baseline recipe (Sec. 4, Table 1 "CLIP/ViT-B/16") or the usual MD recipe (BEiT v2), on the
same loop as pre-training (one loop: AMP, schedules, DDP, checkpoints with exact resume).

Augmentation comes from timm (``create_transform``: RandomResizedCrop, RandAugment, random
erasing; ``Mixup`` for mixup/cutmix), EMA from timm (``ModelEmaV3``); layer decay and freezing are
ours (``layer_decay.py`` says why). The transforms, the validation set and the evaluation hooks are
in ``finetune_eval.py``."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from timm.data import Mixup
from timm.utils import ModelEmaV3
from torch import nn

from maskdistill.models.classifier import build_classifier_model
from maskdistill.parallel.group import Dist
from maskdistill.train.callbacks import Callback
from maskdistill.train.finetune_config import FinetuneConfig, validate_finetune
from maskdistill.train.finetune_eval import eval_dataset, eval_hooks, transforms
from maskdistill.train.job import plan_steps
from maskdistill.train.layer_decay import freeze, layer_decay_groups
from maskdistill.train.session import Session

log = logging.getLogger(__name__)


class FinetuneTask(nn.Module):
    """``forward(images, labels) -> {"loss"}`` on normalised images; ``logits(images)``. With
    ``linear_probe`` the backbone runs without gradients and stays in eval mode (no drop path)."""

    def __init__(
        self,
        model: nn.Module,
        label_smoothing: float = 0.0,
        mixup: Optional[Mixup] = None,
        linear_probe: bool = False,
        ema: Optional[ModelEmaV3] = None,
    ):
        super().__init__()
        self.model, self.label_smoothing, self.mixup, self.linear_probe = model, label_smoothing, mixup, linear_probe
        self.ema = ema
        if ema is not None:
            ema.requires_grad_(False)  # a deep copy: keep it out of the optimizer

    def train(self, mode: bool = True) -> "FinetuneTask":
        super().train(mode)
        if self.linear_probe:
            self.model.eval()
            self.model.get_classifier().train(mode)
        if self.ema is not None:
            self.ema.eval()
        return self

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        m = self.model
        if not self.linear_probe:
            return m(images)
        with torch.no_grad():
            feats = m.forward_head(m.forward_features(images), pre_logits=True)  # (B, C)
        return m.get_classifier()(feats)

    def forward(self, images: torch.Tensor, labels: torch.Tensor) -> Dict[str, torch.Tensor]:
        if bool((labels < 0).any()):
            raise ValueError("fine-tuning needs labelled images: the data folder has no class sub-folders.")
        if self.mixup is not None and self.training:
            # timm's Mixup draws from numpy's global RNG; seed it from torch's, which the loop seeds
            # per step, so that a resumed run mixes exactly as an uninterrupted one.
            state = np.random.get_state()
            np.random.seed(int(torch.randint(0, 2**31 - 1, (1,))))
            try:
                images, targets = self.mixup(images, labels)
            finally:
                np.random.set_state(state)
            logits = self.logits(images).float()
            return {"loss": torch.sum(-targets * F.log_softmax(logits, dim=-1), dim=-1).mean()}
        logits = self.logits(images).float()
        return {"loss": F.cross_entropy(logits, labels, label_smoothing=self.label_smoothing)}


def build_task(
    cfg: FinetuneConfig, num_classes: int, classes: Sequence[str] = ()
) -> Tuple[FinetuneTask, Dict[str, Any], List[str]]:
    m, o, a = cfg.model, cfg.optim, cfg.aug
    model, info = build_classifier_model(
        m.spec,
        num_classes,
        cfg.data.img_size,
        m.drop_path,
        m.global_pool,
        m.rel_pos_bias,
        m.arch,
        classes=classes,
        **m.kwargs,
    )
    frozen = freeze(model, patch_projection=o.freeze_patch_projection, blocks=o.freeze_blocks, backbone=o.linear_probe)
    mixup = None
    if a.mixup > 0 or a.cutmix > 0:
        mixup = Mixup(
            mixup_alpha=a.mixup,
            cutmix_alpha=a.cutmix,
            prob=a.mixup_prob,
            switch_prob=a.switch_prob,
            mode=a.mixup_mode,
            label_smoothing=a.label_smoothing,
            num_classes=num_classes,
        )
    ema = ModelEmaV3(model, decay=cfg.ema.decay) if cfg.ema.enabled else None
    return FinetuneTask(model, a.label_smoothing, mixup, o.linear_probe, ema), info, frozen


def _ema_update(task: FinetuneTask) -> Optional[Callable[[int], None]]:
    if task.ema is None:
        return None
    return lambda step: task.ema.update(task.model, step)


def finetune(
    cfg: FinetuneConfig,
    out: str | Path,
    resume: bool = False,
    overwrite: bool = False,
    callbacks: Sequence[Callback] = (),
    dist: Optional[Dist] = None,
) -> Dict[str, float]:
    """Fine-tune ``cfg.model.spec`` on ``cfg.data``; writes a run directory (config, checkpoints with
    an exported backbone, ``best/``, metrics.csv, metrics_eval.csv, TensorBoard)."""
    validate_finetune(cfg)
    session = Session.open(cfg, out, resume, overwrite, dist)
    classes, num_classes = session.classes(cfg.model.num_classes, "fine-tuning")
    task, info, frozen = build_task(cfg, num_classes, classes)
    info.update({k: list(v) for k, v in (("mean", cfg.model.mean), ("std", cfg.model.std)) if v})
    info["classes"] = classes
    log.info(
        "fine-tuning %s (%s): %d classes, %d frozen parameter tensors, layer decay %s",
        cfg.model.spec,
        info["arch"],
        num_classes,
        len(frozen),
        cfg.optim.layer_decay,
    )
    train_tf, eval_tf = transforms(cfg, task.model, info["mean"], info["std"])
    val = eval_dataset(cfg, eval_tf, classes)
    session.start()
    meta = session.meta("finetune")
    hooks = eval_hooks(cfg, val, task, session.device, session.out, info, meta)
    spe = plan_steps(len(session.base), cfg.train, cfg.optim)[0]
    job = session.job(
        task,
        ("image", "label"),
        session.samples(transform=train_tf),
        meta,
        backbone=lambda: (task.model, info),
        callbacks=[*callbacks, *hooks.callbacks],
        fixed_batch=hooks.fixed_batch,
        evaluate=hooks.evaluate,
        eval_every=max(1, round(cfg.eval.every_epochs * spe)),
        on_eval=hooks.best,
        param_groups=lambda: layer_decay_groups(task, cfg.optim.weight_decay, cfg.optim.layer_decay, prefix="model."),
        after_step=_ema_update(task),
    )
    summary = session.run(job)
    if hooks.best is not None:
        summary["best_" + cfg.eval.best_metric] = hooks.best.best
    return summary


__all__ = ["FinetuneTask", "finetune", "build_task"]
