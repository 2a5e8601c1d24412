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

from maskdistill.config import JobConfig
from maskdistill.data.transforms import to_unit
from maskdistill.models.loading import check_timm_name
from maskdistill.parallel.group import Dist
from maskdistill.train.session import Session


@dataclass
class ClassifierModelConfig:
    arch: str = "vit_base_patch16_224"
    num_classes: int = 0  # 0 = the number of classes in the data
    drop_path: float = 0.0
    kwargs: Dict[str, Any] = field(default_factory=dict)
    mean: List[float] = field(default_factory=lambda: [0.485, 0.456, 0.406])
    std: List[float] = field(default_factory=lambda: [0.229, 0.224, 0.225])


@dataclass
class ClassifyConfig(JobConfig):
    """The sections of every job, the classifier and its label smoothing."""

    model: ClassifierModelConfig = field(default_factory=ClassifierModelConfig)
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
    """Train a classifier on the labelled images of ``cfg.data`` into ``out``; returns the loop's
    summary. The checkpoints export the timm network with its class names."""
    session = Session.open(cfg, out, resume, overwrite, dist)
    classes, num_classes = session.classes(cfg.model.num_classes, "classification")
    task = build_classifier(cfg, num_classes)
    dataset = session.samples()
    session.start()
    info = {
        "arch": cfg.model.arch,
        "kwargs": dict(cfg.model.kwargs, num_classes=num_classes, img_size=cfg.data.img_size),
        "mean": list(cfg.model.mean),
        "std": list(cfg.model.std),
        "img_size": cfg.data.img_size,
        "classes": classes,
    }
    job = session.job(task, ("image", "label"), dataset, session.meta("classify"), backbone=lambda: (task.model, info))
    return session.run(job)
