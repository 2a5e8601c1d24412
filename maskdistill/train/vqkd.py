"""Training BEiT v2's VQ-KD tokenizer (paper Sec. 5 / App. B, Fig. 9; recipe: Table 1 "VQ-KD"
column) with the same loop as every other job, and the codebook-health callback.

Codebook health is logged once per epoch (``<run>/metrics_codebook.csv`` and TensorBoard): usage
(share of codes that received a token during the epoch), perplexity of the code distribution, dead
codes, restarts so far, and the reconstruction cosine on a fixed batch of held-out images. When the
usage falls under ``health.usage_warn`` the codebook is collapsing: a warning names the step, and
every code unused during the epoch is restarted from encoder outputs at the next step.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, Optional

import torch

from maskdistill.config import ConfigError, DataConfig, JobConfig, OptimConfig, TeacherConfig, TrainConfig
from maskdistill.config.spec_forms import canonical_spec
from maskdistill.data.sources import base_dataset
from maskdistill.data.transforms import eval_transform
from maskdistill.distill.tokenizer import VQKD, VQKDConfig
from maskdistill.distill.tokenizer_build import build_tokenizer
from maskdistill.parallel.group import Dist
from maskdistill.train.callbacks import Callback, LoopState
from maskdistill.train.session import Session

log = logging.getLogger(__name__)


@dataclass
class HealthConfig:
    # Warn, and restart the unused codes, when fewer than this share of the codes was used since the
    # last report.
    usage_warn: float = 0.25
    every: int = 0  # optimizer steps between reports; 0 = once per epoch
    fixed_images: int = 64  # held-out images for the reconstruction cosine (0 = skip it)


@dataclass
class TokenizerConfig(JobConfig):
    """Defaults: Table 1 "VQ-KD" (100 epochs, batch 512, AdamW (0.9, 0.99), peak lr 2e-4, min lr
    1e-5, cosine, 5 warm-up epochs, wd 1e-4, no clipping, no colour jitter, flip 0.5,
    RandomResizedCrop min scale 0.08) with BEiT v2's teacher: CLIP ViT-B/16, projected tokens."""

    data: DataConfig = field(default_factory=lambda: DataConfig(min_scale=0.08, color_jitter=0.0, hflip=0.5))
    optim: OptimConfig = field(
        default_factory=lambda: OptimConfig(
            lr=2e-4, min_lr=1e-5, betas=(0.9, 0.99), weight_decay=1e-4, clip_grad=None, warmup_epochs=5.0
        )
    )
    train: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=100.0, batch_size=512))
    teacher: TeacherConfig = field(default_factory=lambda: TeacherConfig(projection=True))
    tokenizer: VQKDConfig = field(default_factory=VQKDConfig)
    health: HealthConfig = field(default_factory=HealthConfig)


def check_tokenizer_config(cfg: TokenizerConfig) -> TokenizerConfig:
    """Tokenizer-specific rules (the shared ones are in ``config.validate``)."""
    t, h = cfg.tokenizer, cfg.health
    if t.num_codes < 2 or t.code_dim < 1:
        raise ConfigError(
            f"tokenizer.num_codes={t.num_codes} and tokenizer.code_dim={t.code_dim}: need at "
            f"least 2 codes of dimension >= 1."
        )
    if not 0 <= t.decay < 1:
        raise ConfigError(f"tokenizer.decay={t.decay} must be in [0, 1).")
    if t.whitening not in ("layernorm", "none"):
        raise ConfigError(f"tokenizer.whitening={t.whitening!r} is not one of layernorm, none.")
    if t.decoder_depth < 1:
        raise ConfigError("tokenizer.decoder_depth must be >= 1.")
    if t.dead_threshold < 0 or not 0 <= h.usage_warn <= 1:
        raise ConfigError("tokenizer.dead_threshold must be >= 0 and health.usage_warn a share in [0, 1].")
    if cfg.teacher.prefix_tokens:
        raise ConfigError("the tokenizer reconstructs patch tokens only; set teacher.prefix_tokens=false.")
    return cfg


def check_dead_threshold(cfg: TokenizerConfig, num_tokens: int) -> None:
    """A restarted code gets the average usage; if the threshold is not well below it, codes would
    be restarted at every step."""
    per_step = cfg.train.batch_size // cfg.train.accum_steps * num_tokens  # tokens per forward
    mean = per_step / cfg.tokenizer.num_codes
    if cfg.tokenizer.dead_threshold > mean / 2:
        raise ConfigError(
            f"tokenizer.dead_threshold={cfg.tokenizer.dead_threshold} is not below half the average usage of a "
            f"code ({per_step} tokens per step / {cfg.tokenizer.num_codes} codes = {mean:.2f}); lower it, use "
            f"fewer codes or a larger batch."
        )


class CodebookHealth(Callback):
    """Logs codebook health every ``every`` steps (group "codebook"); on collapse (usage under
    ``usage_warn``) warns with the step and restarts the unused codes at the next training step."""

    def __init__(self, every: int, usage_warn: float, num_images: int = 0) -> None:
        self.every, self.usage_warn, self.num_images = every, usage_warn, num_images
        self.last: Dict[str, float] = {}  # the latest report

    def on_step_end(self, state: LoopState) -> None:
        tok: VQKD = state.model  # type: ignore[assignment]
        cb = tok.codebook
        h = cb.health()
        if self.num_images:
            h["rec_cosine"] = tok.reconstruction_cosine(state.fixed_batch()["image"].float() / 255)
        state.log(h, group="codebook")
        self.last = h
        log.info(
            "codebook at step %d: usage %.1f %%, perplexity %.1f of %d, %d dead, %d restarts%s",
            state.step,
            100 * h["usage"],
            h["perplexity"],
            cb.num_codes,
            h["dead_codes"],
            h["restarts"],
            f", reconstruction cosine {h['rec_cosine']:.3f}" if "rec_cosine" in h else "",
        )
        if h["usage"] < self.usage_warn:
            # Under DDP this runs on process 0 only; DDP broadcasts process 0's buffers before the
            # next forward, so every process restarts the same codes.
            n = cb.mark_unused_dead()
            log.warning(
                "codebook collapse at step %d: only %.1f %% of the %d codes were used since the last "
                "report (health.usage_warn=%.2f); restarting the %d unused codes from encoder outputs at "
                "the next step (%d restarted so far).",
                state.step,
                100 * h["usage"],
                cb.num_codes,
                self.usage_warn,
                n,
                h["restarts"],
            )
        cb.reset_window()


def _fixed_images(cfg: TokenizerConfig) -> Callable[[], Dict[str, torch.Tensor]]:
    d = cfg.data

    def batch() -> Dict[str, torch.Tensor]:
        data = base_dataset(d.path, d, split="val")  # built-in data: held out; a folder: its first images
        tf = eval_transform(d.img_size)
        n = min(cfg.health.fixed_images, len(data))  # type: ignore[arg-type]
        return {"image": torch.stack([tf(data[i][0]) for i in range(n)])}

    return batch


def teacher_id(spec: str) -> str:
    """The spec recorded in the tokenizer: a local teacher (a run directory, ``local-dir:``) as an absolute path."""
    return canonical_spec(spec)


def train_tokenizer(
    cfg: TokenizerConfig,
    out: str | Path,
    *,
    resume: bool = False,
    overwrite: bool = False,
    dist: Optional[Dist] = None,
    pretrained_teacher: bool = True,
) -> Dict[str, float]:
    """Train a VQ-KD tokenizer into ``out`` (a run directory usable as ``decoder.tokenizer``);
    returns the loop's summary with the last codebook health. ``pretrained_teacher=False`` builds
    the teacher without its weights (nothing is downloaded)."""
    check_tokenizer_config(cfg)
    session = Session.open(cfg, out, resume, overwrite, dist)
    d = cfg.data
    tok = build_tokenizer(cfg.tokenizer, cfg.teacher, d.img_size, pretrained_teacher)
    check_dead_threshold(cfg, tok.grid[0] * tok.grid[1])
    dataset = session.samples()
    session.start()
    every = cfg.health.every or max(1, len(dataset) // cfg.train.batch_size)
    info = {
        "teacher": teacher_id(cfg.teacher.spec),
        "target_dim": tok.target_dim,
        "num_codes": tok.num_codes,
        "code_dim": tok.codebook.dim,
        "grid": list(tok.grid),
        "img_size": d.img_size,
    }
    health = CodebookHealth(every, cfg.health.usage_warn, cfg.health.fixed_images)
    job = session.job(
        tok,
        ("image",),
        dataset,
        session.meta("tokenizer", tokenizer=info),
        callbacks=[health],
        fixed_batch=_fixed_images(cfg) if cfg.health.fixed_images else None,
    )
    summary = session.run(job)
    return dict(summary, **{f"codebook_{k}": v for k, v in health.last.items()})


__all__ = ["TokenizerConfig", "HealthConfig", "CodebookHealth", "train_tokenizer", "check_tokenizer_config"]
