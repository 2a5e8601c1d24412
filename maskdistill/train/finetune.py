"""``maskdistill finetune``: image classification fine-tuning of any checkpoint or timm ViT with the
paper's baseline recipe (Sec. 4, Table 1 "CLIP/ViT-B/16") or the usual MD recipe (BEiT v2), on the
same loop as pre-training (one loop: AMP, schedules, DDP, checkpoints with exact resume).

Augmentation comes from timm (``create_transform``: RandomResizedCrop, RandAugment, random
erasing; ``Mixup`` for mixup/cutmix), EMA from timm (``ModelEmaV3``); layer decay and freezing are
ours (``layer_decay.py`` says why)."""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from timm.data import Mixup, create_transform, resolve_data_config
from timm.utils import ModelEmaV3
from torch import nn
from torch.utils.data import Dataset

from maskdistill import __version__
from maskdistill.config import to_dict
from maskdistill.data.folder import ImageFolder
from maskdistill.data.pipeline import SeededSamples
from maskdistill.data.sources import base_dataset
from maskdistill.data.synthetic import ShapesTextures
from maskdistill.eval.classification import topk_accuracy
from maskdistill.models.classifier import build_classifier_model
from maskdistill.models.device import resolve_device
from maskdistill.runs.folder import prepare_run_dir
from maskdistill.train.callbacks import Callback
from maskdistill.train.distributed import Dist, init_distributed
from maskdistill.train.finetune_config import FinetuneConfig, validate_finetune
from maskdistill.train.layer_decay import freeze, layer_decay_groups
from maskdistill.train.loop import Job, plan_steps, run
from maskdistill.train.pretrain import write_run_dir

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


def check_same_classes(train: Sequence[str], val: Sequence[str], train_path: str, val_path: str) -> None:
    if list(train) != list(val):
        only_t, only_v = sorted(set(train) - set(val)), sorted(set(val) - set(train))
        detail = (
            f"only in train: {only_t[:10]}; only in val: {only_v[:10]}"
            if only_t or only_v
            else "same names in another order"
        )
        raise ValueError(
            f"train ({train_path}) and validation ({val_path}) folders have different class "
            f"lists ({detail}). Labels would not match; make the class sub-folders the same."
        )


def eval_dataset(cfg: FinetuneConfig, transform: Any, classes: Sequence[str]) -> Optional[Dataset]:
    d = cfg.data
    if d.val_path:
        val = ImageFolder(d.val_path, transform=transform)
        check_same_classes(classes, val.classes, d.path, d.val_path)
        return val
    if d.path == "builtin":
        return ShapesTextures(
            d.builtin_val_images,
            d.builtin_image_size,
            d.builtin_seed,
            "val",
            label=d.builtin_label,
            transform=transform,
        )
    log.warning("no data.val_path: fine-tuning without evaluation (no top-1, no best checkpoint).")
    return None


def transforms(cfg: FinetuneConfig, model: nn.Module, mean: Sequence[float], std: Sequence[float]) -> Tuple[Any, Any]:
    d = cfg.data
    train_tf = create_transform(
        d.img_size,
        is_training=True,
        scale=(d.min_scale, 1.0),
        hflip=d.hflip,
        color_jitter=d.color_jitter,
        auto_augment=d.auto_augment or None,
        interpolation=d.interpolation,
        mean=tuple(mean),
        std=tuple(std),
        re_prob=d.reprob,
        re_mode=d.remode,
        re_count=d.recount,
    )
    crop = d.crop_pct or resolve_data_config({}, model=model).get("crop_pct") or 1.0
    eval_tf = create_transform(
        d.img_size, is_training=False, interpolation=d.interpolation, crop_pct=crop, mean=tuple(mean), std=tuple(std)
    )
    return train_tf, eval_tf


class _BestCheckpoint:
    """Keeps ``<run>/best/`` (backbone + meta) for the best evaluation so far; survives resume."""

    def __init__(self, run_dir: Path, metric: str, task: FinetuneTask, info: Dict[str, Any], meta: Dict[str, Any]):
        self.dir, self.metric, self.task, self.info, self.meta = Path(run_dir) / "best", metric, task, info, meta
        prev = self.dir / "meta.json"
        self.best = json.loads(prev.read_text())["metrics"][metric] if prev.is_file() else -float("inf")

    def __call__(self, step: int, metrics: Dict[str, float]) -> None:
        if metrics[self.metric] <= self.best:
            return
        self.best = metrics[self.metric]
        module = self.task.ema.module if self.metric.startswith("ema_") else self.task.model
        tmp = self.dir.with_name(".tmp_best")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        save_file(
            {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()},
            str(tmp / "backbone.safetensors"),
        )
        (tmp / "meta.json").write_text(
            json.dumps(dict(self.meta, step=step, metrics=metrics, backbone=self.info), indent=1, default=str)
        )
        old = self.dir.with_name(".old_best")
        if self.dir.exists():
            os.replace(self.dir, old)
        os.replace(tmp, self.dir)
        shutil.rmtree(old, ignore_errors=True)


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
    out = Path(out)
    device = resolve_device(cfg.train.device, "train.device")
    dist = dist or init_distributed(device)
    cfg_dict = to_dict(cfg)
    if dist.main:
        prepare_run_dir(out, cfg_dict, resume, overwrite, check_only=True)
    d = cfg.data
    base = base_dataset(d.path, d)
    classes = list(getattr(base, "classes", []))
    num_classes = cfg.model.num_classes or len(classes)
    if num_classes <= 0:
        raise ValueError(f"{d.path} has no class sub-folders; fine-tuning needs labelled images.")
    torch.manual_seed(cfg.train.seed)
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
    write_run_dir(out, cfg, resume, overwrite, dist)
    spe = plan_steps(len(base), cfg.train, cfg.optim)[0]
    meta = {"kind": "finetune", "version": __version__, "config": cfg_dict}
    evaluate = on_eval = fixed = None
    cbs: List[Callback] = list(callbacks)
    if val is not None:

        def evaluate(t: nn.Module) -> Dict[str, float]:
            r = topk_accuracy(t.logits, val, device, cfg.eval.batch_size, d.num_workers)
            if t.ema is not None:
                r.update(topk_accuracy(t.ema.module, val, device, cfg.eval.batch_size, d.num_workers, "ema_"))
            return r

        on_eval = _BestCheckpoint(out, cfg.eval.best_metric, task, info, meta)

        def fixed() -> Dict[str, torch.Tensor]:
            items = [val[i] for i in range(min(cfg.eval.fixed_batch, len(val)))]
            return {"image": torch.stack([x for x, _ in items]), "label": torch.tensor([y for _, y in items])}

        if cfg.eval.sharpness_every:
            from maskdistill.train.sharpness import SharpnessCallback

            cbs.append(SharpnessCallback(every=cfg.eval.sharpness_every))
    after_step = None
    if task.ema is not None:

        def after_step(step: int) -> None:
            task.ema.update(task.model, step)

    job = Job(
        task=task,
        batch_keys=("image", "label"),
        dataset=SeededSamples(base, train_tf, None, cfg.train.seed),
        optim=cfg.optim,
        train=cfg.train,
        run_dir=out,
        backbone=lambda: (task.model, info),
        meta=meta,
        num_workers=d.num_workers,
        max_corrupt_share=d.max_corrupt_share,
        callbacks=cbs,
        fixed_batch=fixed,
        evaluate=evaluate,
        eval_every=max(1, round(cfg.eval.every_epochs * spe)),
        on_eval=on_eval,
        param_groups=lambda: layer_decay_groups(task, cfg.optim.weight_decay, cfg.optim.layer_decay, prefix="model."),
        after_step=after_step,
    )
    summary = run(job, device, dist, resume=resume)
    if on_eval is not None:
        summary["best_" + cfg.eval.best_metric] = on_eval.best
    return summary


__all__ = ["FinetuneTask", "finetune", "build_task", "check_same_classes"]
