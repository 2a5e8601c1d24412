"""Fine-tuning's data and evaluation (paper Sec. 4: top-1 after fine-tuning; Fig. 7c/f: sharpness
during it): timm's training and evaluation transforms, the validation set (which must have the
training set's classes), top-1/top-5 of the model and of its EMA, the fixed batch the callbacks
measure on, and ``<run>/best/``, the best evaluation so far."""

from __future__ import annotations

import json
import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch
from safetensors.torch import save_file
from timm.data import create_transform, resolve_data_config
from torch import nn
from torch.utils.data import Dataset

from maskdistill.data.folder import ImageFolder
from maskdistill.data.synthetic import ShapesTextures
from maskdistill.eval.classification import topk_accuracy
from maskdistill.runs.verify import write_checksums
from maskdistill.train.callbacks import Callback
from maskdistill.train.finetune_config import FinetuneConfig

log = logging.getLogger(__name__)


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


class BestCheckpoint:
    """Keeps ``<run>/best/`` (backbone + meta) for the best evaluation so far; survives resume."""

    def __init__(self, run_dir: Path, metric: str, task: nn.Module, info: Dict[str, Any], meta: Dict[str, Any]):
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
        write_checksums(tmp)  # verified when it is loaded, like every checkpoint
        old = self.dir.with_name(".old_best")
        if self.dir.exists():
            os.replace(self.dir, old)
        os.replace(tmp, self.dir)
        shutil.rmtree(old, ignore_errors=True)


@dataclass
class EvalHooks:
    """What the loop is given for evaluation; all empty without a validation set."""

    evaluate: Optional[Callable[[nn.Module], Dict[str, float]]] = None
    best: Optional[BestCheckpoint] = None  # the loop's ``on_eval``
    fixed_batch: Optional[Callable[[], Dict[str, torch.Tensor]]] = None
    callbacks: List[Callback] = field(default_factory=list)


def eval_hooks(
    cfg: FinetuneConfig,
    val: Optional[Dataset],
    task: nn.Module,
    device: torch.device,
    run_dir: Path,
    info: Dict[str, Any],
    meta: Dict[str, Any],
) -> EvalHooks:
    """Top-1/top-5 on ``val`` (and of the EMA, ``ema_``), the best checkpoint on
    ``cfg.eval.best_metric``, the fixed batch of ``cfg.eval.fixed_batch`` validation images and, with
    ``cfg.eval.sharpness_every``, the sharpness callback."""
    if val is None:
        return EvalHooks()
    e, workers = cfg.eval, cfg.data.num_workers

    def evaluate(t: nn.Module) -> Dict[str, float]:
        r = topk_accuracy(t.logits, val, device, e.batch_size, workers)
        if t.ema is not None:
            r.update(topk_accuracy(t.ema.module, val, device, e.batch_size, workers, "ema_"))
        return r

    best = BestCheckpoint(run_dir, e.best_metric, task, info, meta)

    def fixed() -> Dict[str, torch.Tensor]:
        items = [val[i] for i in range(min(e.fixed_batch, len(val)))]
        return {"image": torch.stack([x for x, _ in items]), "label": torch.tensor([y for _, y in items])}

    callbacks: List[Callback] = []
    if e.sharpness_every:
        from maskdistill.train.sharpness import SharpnessCallback

        callbacks.append(SharpnessCallback(every=e.sharpness_every))
    return EvalHooks(evaluate, best, fixed, callbacks)


__all__ = ["check_same_classes", "eval_dataset", "transforms", "BestCheckpoint", "EvalHooks", "eval_hooks"]
