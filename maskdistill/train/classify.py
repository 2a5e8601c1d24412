"""Supervised image classification with the same loop as pre-training: the demo trains its small
teacher with it (the paper's supervised DeiT teacher, in miniature). Fine-tuning recipes (layer
decay, RandAugment, ...) build on this task."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

import timm
import torch
import torch.nn.functional as F
from torch import nn

from maskdistill import __version__
from maskdistill.config import DataConfig, OptimConfig, TrainConfig, to_dict
from maskdistill.data.pipeline import SeededSamples
from maskdistill.data.sources import base_dataset
from maskdistill.data.transforms import pretrain_transform, to_unit
from maskdistill.models.device import resolve_device
from maskdistill.models.loading import check_timm_name
from maskdistill.runs.folder import prepare_run_dir
from maskdistill.train.distributed import Dist, init_distributed
from maskdistill.train.loop import Job, run
from maskdistill.train.pretrain import write_run_dir


@dataclass
class ClassifierModelConfig:
    arch: str = "vit_base_patch16_224"
    num_classes: int = 0  # 0 = the number of classes in the data
    drop_path: float = 0.0
    kwargs: Dict[str, Any] = field(default_factory=dict)
    mean: List[float] = field(default_factory=lambda: [0.485, 0.456, 0.406])
    std: List[float] = field(default_factory=lambda: [0.229, 0.224, 0.225])


@dataclass
class ClassifyConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ClassifierModelConfig = field(default_factory=ClassifierModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    label_smoothing: float = 0.1


class Classifier(nn.Module):
    """timm classifier + its input normalisation; ``forward(images, labels) -> {"loss", "acc"}``."""

    def __init__(self, model: nn.Module, mean: List[float], std: List[float], label_smoothing: float = 0.0):
        super().__init__()
        self.model, self.label_smoothing = model, label_smoothing
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1), persistent=False)

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        return self.model((to_unit(images) - self.mean) / self.std)

    def forward(self, images: torch.Tensor, labels: torch.Tensor) -> Dict[str, torch.Tensor]:
        if bool((labels < 0).any()):
            raise ValueError("classification needs labelled images: the data folder has no class sub-folders.")
        logits = self.logits(images)
        return {"loss": F.cross_entropy(logits.float(), labels, label_smoothing=self.label_smoothing)}


def build_classifier(cfg: ClassifyConfig, num_classes: int) -> Classifier:
    check_timm_name(cfg.model.arch)
    model = timm.create_model(
        cfg.model.arch,
        pretrained=False,
        num_classes=num_classes,
        img_size=cfg.data.img_size,
        drop_path_rate=cfg.model.drop_path,
        **cfg.model.kwargs,
    )
    return Classifier(model, cfg.model.mean, cfg.model.std, cfg.label_smoothing)


def train_classifier(
    cfg: ClassifyConfig, out: str | Path, resume: bool = False, overwrite: bool = False, dist: Optional[Dist] = None
) -> Dict[str, float]:
    out = Path(out)
    device = resolve_device(cfg.train.device, "train.device")
    dist = dist or init_distributed(device)
    cfg_dict = to_dict(cfg)
    if dist.main:  # refuse early, write nothing yet
        prepare_run_dir(out, cfg_dict, resume, overwrite, check_only=True)
    d = cfg.data
    base = base_dataset(d.path, d)
    classes = getattr(base, "classes", [])
    num_classes = cfg.model.num_classes or len(classes)
    if num_classes <= 0:
        raise ValueError(f"{d.path} has no class sub-folders; classification needs labelled images.")
    torch.manual_seed(cfg.train.seed)
    task = build_classifier(cfg, num_classes)
    dataset = SeededSamples(
        base, pretrain_transform(d.img_size, d.min_scale, d.color_jitter, d.hflip), None, cfg.train.seed
    )
    write_run_dir(out, cfg, resume, overwrite, dist)
    kwargs = dict(cfg.model.kwargs, num_classes=num_classes, img_size=d.img_size)
    info = {
        "arch": cfg.model.arch,
        "kwargs": kwargs,
        "mean": list(cfg.model.mean),
        "std": list(cfg.model.std),
        "img_size": d.img_size,
        "classes": list(classes),
    }
    job = Job(
        task=task,
        batch_keys=("image", "label"),
        dataset=dataset,
        optim=cfg.optim,
        train=cfg.train,
        run_dir=out,
        backbone=lambda: (task.model, info),
        meta={"kind": "classify", "version": __version__, "config": cfg_dict},
        num_workers=d.num_workers,
        max_corrupt_share=d.max_corrupt_share,
    )
    return run(job, device, dist, resume=resume)
