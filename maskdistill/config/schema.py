"""The typed configuration of every job (paper Table 1): the dataclass sections with their
defaults -- the pre-training recipe of the "BEiT v2/Base" column with a CLIP ViT-B/16 teacher --
the allowed values of the choice keys, and ``validate``, the rules no single value shows, raising
``ConfigError`` with the key and the fix."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

from maskdistill.errors import UsageError


class ConfigError(UsageError):
    """A configuration that cannot work; the message names the key and the fix."""


@dataclass
class DataConfig:
    # An image folder (class sub-folders or flat) or "builtin" for the procedurally generated
    # shapes x textures set that ships with the package.
    path: str = "builtin"
    img_size: int = 224
    # Table 1 (BEiT v2/Base): RandomResizedCrop min scale 0.2, colour jitter 0.4, flip 0.5.
    min_scale: float = 0.2
    color_jitter: float = 0.4
    hflip: float = 0.5
    num_workers: int = 8
    # Corrupt images are skipped and counted; past this share of the images seen, the run stops.
    max_corrupt_share: float = 0.01
    # Built-in data only.
    builtin_images: int = 5000
    builtin_image_size: int = 64
    builtin_seed: int = 0
    builtin_label: str = "shape"  # shape | texture: which class the built-in images are labelled with


@dataclass
class MaskConfig:
    kind: str = "blockwise"  # blockwise | random | none
    # BEiT blockwise: 75 of 196 patches (~40 %), blocks of >= 16 patches, aspect in [0.3, 1/0.3].
    num_masked: int = 75
    min_block: int = 16
    max_block: Optional[int] = None
    min_aspect: float = 0.3
    ratio: float = 0.4  # random masking
    loss_on: str = "masked"  # M_out: masked | all


@dataclass
class TeacherConfig:
    # Any model spec (config/spec_forms.py): timm:<name>[@weights], hf-hub:<org>/<name>, local-dir:<folder>,
    # open_clip:<arch>/<tag>, pixels, or a maskdistill run/checkpoint dir.
    spec: str = "timm:vit_base_patch16_clip_224.openai"
    layer: int = -1  # which block's output (python index; -1 = last)
    final_norm: bool = True  # apply the model's final norm (CLIP: ln_post) to the tokens
    projection: bool = False  # CLIP towers: apply the output projection to every token
    prefix_tokens: bool = False  # also distil the prefix (CLS) tokens


@dataclass
class StudentConfig:
    arch: str = "beit_base_patch16_224"
    rel_pos_bias: str = "shared"  # shared | per_block | none (BEiT family only)
    abs_pos_emb: bool = False
    layer_scale: Optional[float] = 0.1
    drop_path: float = 0.0
    # Attention kernel: timm's (SDPA; the relative position bias keeps it off flash attention) or
    # flex (FlexAttention adds the bias inside a fused kernel; CUDA only; see models/flex.py).
    attention: str = "timm"
    # Extra keyword arguments for timm.create_model (embed_dim, depth, patch_size, ...).
    kwargs: Dict[str, Any] = field(default_factory=dict)
    # Input normalisation of the student (the teacher uses its own pretrained_cfg).
    mean: Tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: Tuple[float, float, float] = (0.229, 0.224, 0.225)


@dataclass
class DecoderConfig:
    kind: str = "fc"  # fc | transformer | tokenizer (BEiT v2: linear to the K codes of a VQ-KD tokenizer)
    depth: int = 2  # transformer decoder only
    num_heads: int = 0  # 0 = the student's
    # tokenizer decoder only: the run (or checkpoint) directory of `maskdistill tokenizer train`,
    # and the codebook size it must have (0 = whatever it has).
    tokenizer: str = ""
    codebook_size: int = 0


@dataclass
class ObjectiveConfig:
    whitening: str = "layernorm"  # N: layernorm (no affine) | none
    loss: str = "smooth_l1"  # R: smooth_l1 | mse | cosine | ce (cross-entropy on tokenizer codes)
    beta: float = 2.0  # smooth-L1 beta (FD uses 2)


@dataclass
class OptimConfig:
    # Table 1 (BEiT v2/Base): AdamW (0.98, 0.999), peak 1.5e-3 at batch 2048, min 1e-5,
    # cosine with 10 warm-up epochs, wd 0.05, clip 3.0.
    lr: float = 1.5e-3
    min_lr: float = 1e-5
    betas: Tuple[float, float] = (0.98, 0.999)
    eps: float = 1e-8
    weight_decay: float = 0.05
    clip_grad: Optional[float] = 3.0
    warmup_epochs: float = 10.0


@dataclass
class TrainConfig:
    epochs: float = 300.0
    batch_size: int = 2048  # global batch per optimizer step (all processes, all accumulation)
    accum_steps: int = 1
    max_steps: Optional[int] = None  # stop early (smoke runs); the schedule still spans `epochs`
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda
    precision: str = "auto"  # auto (bf16 on CUDA, fp32 on CPU) | bf16 | fp32
    compile: bool = False
    log_every: int = 20
    ckpt_every: int = 1000
    keep_last: int = 2


@dataclass
class LogConfig:
    """Where the metrics go besides metrics.csv and TensorBoard: Weights & Biases (``pip install
    maskdistill[wandb]``). A resumed run continues its W&B run; changing these keys on resume is allowed."""

    wandb: bool = False
    project: str = "maskdistill"
    name: str = ""  # "" = the run folder's name
    tags: List[str] = field(default_factory=list)
    entity: str = ""  # "" = your W&B default
    mode: str = ""  # online | offline | disabled; "" = wandb's own (WANDB_MODE)


@dataclass
class JobConfig:
    """The sections every training job has (pre-training, classification, fine-tuning, the
    tokenizer): its images, its optimizer and its loop. A job's config adds its own sections and may
    narrow these to its own subclasses and defaults."""

    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    log: LogConfig = field(default_factory=LogConfig)


@dataclass
class PretrainConfig(JobConfig):
    """Masked distillation (paper Eq. 1): the teacher T, the whitening N and objective R, the
    student S, the decoder D and the masks M, on top of the sections of every job."""

    mask: MaskConfig = field(default_factory=MaskConfig)
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    student: StudentConfig = field(default_factory=StudentConfig)
    decoder: DecoderConfig = field(default_factory=DecoderConfig)
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)


_CHOICES = {
    "data.builtin_label": ("shape", "texture"),
    "mask.kind": ("blockwise", "random", "none"),
    "mask.loss_on": ("masked", "all"),
    "student.rel_pos_bias": ("shared", "per_block", "none"),
    "student.attention": ("timm", "flex"),
    "decoder.kind": ("fc", "transformer", "tokenizer"),
    "objective.whitening": ("layernorm", "none"),
    "objective.loss": ("smooth_l1", "mse", "cosine", "ce"),
    "train.device": ("auto", "cpu", "cuda"),
    "train.precision": ("auto", "bf16", "fp32"),
    "log.mode": ("", "online", "offline", "disabled"),
}


def _get(cfg: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        cfg = getattr(cfg, part)
    return cfg


def validate(cfg: Any) -> Any:
    """Raise ConfigError for values that cannot work; returns cfg for chaining. Works for every
    job's config: sections a job does not have are skipped."""
    for key, choices in _CHOICES.items():
        if not hasattr(cfg, key.split(".")[0]):
            continue
        if _get(cfg, key) not in choices:
            raise ConfigError(f"{key}={_get(cfg, key)!r} is not one of {', '.join(choices)}.")
    t, o = cfg.train, cfg.optim
    if t.batch_size <= 0 or t.accum_steps <= 0:
        raise ConfigError("train.batch_size and train.accum_steps must be positive.")
    if t.batch_size % t.accum_steps:
        raise ConfigError(
            f"train.batch_size={t.batch_size} is not divisible by "
            f"train.accum_steps={t.accum_steps}; pick a batch size that is."
        )
    if not 0 < cfg.data.min_scale <= 1:
        raise ConfigError(f"data.min_scale={cfg.data.min_scale} must be in (0, 1].")
    if o.lr <= 0 or o.min_lr < 0 or o.min_lr > o.lr:
        raise ConfigError(f"need 0 <= optim.min_lr <= optim.lr and lr > 0 (got lr={o.lr}, min_lr={o.min_lr}).")
    if not 0 <= cfg.data.max_corrupt_share <= 1:
        raise ConfigError("data.max_corrupt_share must be a share in [0, 1].")
    if hasattr(cfg, "mask") and cfg.mask.kind == "none" and cfg.mask.loss_on == "masked":
        raise ConfigError(
            "mask.kind=none masks nothing, so a loss on masked tokens is empty; set "
            "mask.loss_on=all (plain feature distillation) or choose a mask kind."
        )
    if hasattr(cfg, "decoder") and hasattr(cfg, "objective"):
        _validate_code_targets(cfg)
    if hasattr(cfg, "student"):
        patch = cfg.student.kwargs.get("patch_size")
        if patch and cfg.data.img_size % int(patch):
            raise ConfigError(
                f"data.img_size={cfg.data.img_size} is not divisible by the student's patch "
                f"size {patch}; pick a multiple of {patch}."
            )
    return cfg


def _validate_code_targets(cfg: Any) -> None:
    """MD with code targets (BEiT v2): the tokenizer decoder and the cross-entropy go together."""
    tok, ce = cfg.decoder.kind == "tokenizer", cfg.objective.loss == "ce"
    if tok and not cfg.decoder.tokenizer:
        raise ConfigError(
            "decoder.kind=tokenizer needs decoder.tokenizer=<run directory of `maskdistill tokenizer train`>."
        )
    if tok and not ce:
        raise ConfigError(
            f"decoder.kind=tokenizer predicts codes, so objective.loss must be ce "
            f"(got {cfg.objective.loss}); set objective.loss=ce."
        )
    if ce and not tok:
        raise ConfigError(
            f"objective.loss=ce needs code targets; set decoder.kind=tokenizer (got "
            f"decoder.kind={cfg.decoder.kind}) or choose smooth_l1, mse or cosine."
        )
    if tok and getattr(cfg, "teacher", None) is not None and cfg.teacher.prefix_tokens:
        raise ConfigError("decoder.kind=tokenizer predicts patch codes only; set teacher.prefix_tokens=false.")
    if cfg.decoder.codebook_size < 0:
        raise ConfigError("decoder.codebook_size must be >= 0 (0 = the tokenizer's).")


__all__ = [
    "ConfigError",
    "DataConfig",
    "MaskConfig",
    "TeacherConfig",
    "StudentConfig",
    "DecoderConfig",
    "ObjectiveConfig",
    "OptimConfig",
    "TrainConfig",
    "JobConfig",
    "LogConfig",
    "PretrainConfig",
    "validate",
]
