"""Configuration of ``maskdistill finetune``. Defaults are the paper's baseline recipe, Table 1
"CLIP/ViT-B/16" (the preset ``configs/finetune/vit_b16_paper.yaml`` spells it out item by item)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

from maskdistill.config import ConfigError, DataConfig, JobConfig, OptimConfig, TrainConfig
from maskdistill.config.spec_forms import NETWORK_SPEC_FORMS


@dataclass
class FinetuneDataConfig(DataConfig):
    val_path: str = ""  # "" with path=builtin: the built-in validation split; else no evaluation
    min_scale: float = 0.08
    color_jitter: float = 0.4  # as timm: not applied when auto_augment is set
    hflip: float = 0.5
    auto_augment: str = "rand-m9-mstd0.5-inc1"  # timm RandAugment string; "" = off
    reprob: float = 0.25  # random erasing
    remode: str = "pixel"
    recount: int = 1
    interpolation: str = "bicubic"
    crop_pct: Optional[float] = None  # evaluation centre crop; None = the model's own (timm)
    builtin_val_images: int = 1000


@dataclass
class FinetuneModelConfig:
    spec: str = (
        ""  # a maskdistill run/checkpoint directory, timm:<name>[@weights], hf-hub:<org>/<name>, local-dir:<folder>
    )
    arch: str = ""  # optional: the architecture you expect; a checkpoint of another one is an error
    num_classes: int = 0  # 0 = the number of classes in the data
    drop_path: float = 0.0
    global_pool: str = ""  # "" = as the source model; avg (mean pooling) | token (CLS)
    rel_pos_bias: str = "per_block"  # per_block: expand a shared BEiT bias to every block | keep
    kwargs: Dict[str, Any] = field(default_factory=dict)
    # Input normalisation; None = the checkpoint's (maskdistill) or the timm model's pretrained_cfg.
    mean: Optional[List[float]] = None
    std: Optional[List[float]] = None


@dataclass
class FinetuneOptimConfig(OptimConfig):
    lr: float = 5e-5
    min_lr: float = 1e-7
    betas: Tuple[float, float] = (0.9, 0.95)
    weight_decay: float = 0.05
    clip_grad: Optional[float] = None
    warmup_epochs: float = 10.0
    layer_decay: float = 0.6  # 1.0 = off
    freeze_patch_projection: bool = True
    freeze_blocks: int = 0  # freeze the stem and the first k blocks (Fig. 8c)
    linear_probe: bool = False  # frozen backbone, train the head only


@dataclass
class AugConfig:
    label_smoothing: float = 0.1
    mixup: float = 0.0  # mixup alpha; 0 = off
    cutmix: float = 0.0  # cutmix alpha; 0 = off
    mixup_prob: float = 1.0
    switch_prob: float = 0.5
    mixup_mode: str = "batch"


@dataclass
class EmaConfig:
    enabled: bool = False
    decay: float = 0.9999


@dataclass
class EvalConfig:
    every_epochs: float = 1.0
    batch_size: int = 256
    best_metric: str = "top1"  # top1 | ema_top1: which model the best checkpoint keeps
    fixed_batch: int = 32  # size of the fixed batch that callbacks (sharpness) measure on
    sharpness_every: int = 0  # steps; log lambda_1 and the Hessian trace on the fixed batch (Fig. 7c/f)


@dataclass
class FinetuneConfig(JobConfig):
    """The sections of every job with fine-tuning's defaults, the model to fine-tune, the
    augmentation, the EMA and the evaluation."""

    data: FinetuneDataConfig = field(default_factory=FinetuneDataConfig)
    optim: FinetuneOptimConfig = field(default_factory=FinetuneOptimConfig)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=50, batch_size=1024))
    model: FinetuneModelConfig = field(default_factory=FinetuneModelConfig)
    aug: AugConfig = field(default_factory=AugConfig)
    ema: EmaConfig = field(default_factory=EmaConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)


_CHOICES = {
    "data.remode": ("pixel", "rand", "const"),
    "model.global_pool": ("", "avg", "token"),
    "model.rel_pos_bias": ("per_block", "keep"),
    "aug.mixup_mode": ("batch", "pair", "elem"),
    "eval.best_metric": ("top1", "ema_top1"),
}


def validate_finetune(cfg: FinetuneConfig) -> FinetuneConfig:
    for key, choices in _CHOICES.items():
        section, name = key.split(".")
        value = getattr(getattr(cfg, section), name)
        if value not in choices:
            raise ConfigError(f"{key}={value!r} is not one of {', '.join(repr(c) for c in choices)}.")
    if not cfg.model.spec:
        raise ConfigError(f"model.spec is empty: give {NETWORK_SPEC_FORMS} (e.g. model.spec=runs/md_student).")
    o = cfg.optim
    if not 0 < o.layer_decay <= 1:
        raise ConfigError(f"optim.layer_decay={o.layer_decay} must be in (0, 1] (1 = no decay).")
    if o.linear_probe and o.freeze_blocks:
        raise ConfigError("optim.linear_probe freezes the whole backbone; leave optim.freeze_blocks=0.")
    if (cfg.aug.mixup > 0 or cfg.aug.cutmix > 0) and cfg.train.batch_size % 2:
        raise ConfigError(f"mixup/cutmix need an even batch size (train.batch_size={cfg.train.batch_size}).")
    if cfg.eval.best_metric == "ema_top1" and not cfg.ema.enabled:
        raise ConfigError("eval.best_metric=ema_top1 needs ema.enabled=true.")
    return cfg


__all__ = [
    "FinetuneConfig",
    "FinetuneDataConfig",
    "FinetuneModelConfig",
    "FinetuneOptimConfig",
    "AugConfig",
    "EmaConfig",
    "EvalConfig",
    "validate_finetune",
]
