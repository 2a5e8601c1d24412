"""Masked-distillation pre-training (paper Sec. 2, Eq. 1): build T, N, S, D, M, R from a
``PretrainConfig`` and run the training loop. Also the run-directory rules shared by every job:
an output folder that holds a run is never overwritten silently, and resuming with a different
config lists the differences."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Dict, Optional, Sequence

import torch

from maskdistill import __version__
from maskdistill.config import PretrainConfig, to_dict, to_yaml
from maskdistill.data.masking import make_mask_generator
from maskdistill.data.pipeline import SeededSamples
from maskdistill.data.sources import base_dataset
from maskdistill.data.transforms import pretrain_transform
from maskdistill.distill.distiller import MaskedDistiller
from maskdistill.distill.parts import Whitening, build_decoder
from maskdistill.models.device import resolve_device
from maskdistill.models.flex import use_flex_attention
from maskdistill.models.student import build_student
from maskdistill.models.teacher import build_teacher, describe
from maskdistill.runs.folder import prepare_run_dir
from maskdistill.train.distributed import Dist, barrier, init_distributed
from maskdistill.train.loop import Job, run

log = logging.getLogger(__name__)


def build_distiller(cfg: PretrainConfig, pretrained_teacher: bool = True) -> MaskedDistiller:
    img = cfg.data.img_size
    student = build_student(cfg.student, img)
    in_chans = int(student.model.patch_embed.proj.in_channels)
    if cfg.decoder.kind == "tokenizer":  # BEiT v2: the targets are a VQ-KD tokenizer's codes
        from maskdistill.distill.tokenizer import load_code_teacher

        teacher = load_code_teacher(
            cfg.decoder.tokenizer, cfg.teacher.spec, cfg.decoder.codebook_size, img, student.grid
        )
    else:
        teacher = build_teacher(
            cfg.teacher,
            img,
            student.patch_size,
            in_chans,
            cfg.student.mean,
            cfg.student.std,
            pretrained=pretrained_teacher,
        )
    decoder = build_decoder(cfg.decoder, student.embed_dim, teacher.dim, student.model.blocks[0].attn.num_heads)
    gen = mask_generator(cfg, student.grid)
    log.info(
        "teacher %s; student %s (%.1fM parameters, grid %s)",
        describe(teacher),
        cfg.student.arch,
        sum(p.numel() for p in student.parameters()) / 1e6,
        student.grid,
    )
    return MaskedDistiller(
        teacher,
        student,
        decoder,
        Whitening(cfg.objective.whitening),
        cfg.objective,
        cfg.mask.loss_on,
        cfg.student.mean,
        cfg.student.std,
        num_masked=gen.num_masked,
    )


def mask_generator(cfg: PretrainConfig, grid: Sequence[int]):
    m = cfg.mask
    return make_mask_generator(
        m.kind,
        tuple(grid),
        num_masked=m.num_masked,
        min_block=m.min_block,
        max_block=m.max_block,
        min_aspect=m.min_aspect,
        ratio=m.ratio,
    )


def write_run_dir(out: Path, cfg: Any, resume: bool, overwrite: bool, dist: Dist) -> None:
    """Create (or clear, with overwrite) the run directory and write the resolved config, on the main
    process only. Call it once everything the run needs has been built, so that a bad input leaves
    no half run behind that would block the corrected command."""
    if dist.main:
        prepare_run_dir(out, to_dict(cfg), resume, overwrite)
        if not resume:
            (out / "config.yaml").write_text(to_yaml(cfg))
    barrier(dist)


def pretrain(
    cfg: PretrainConfig,
    out: str | Path,
    resume: bool = False,
    overwrite: bool = False,
    pretrained_teacher: bool = True,
    dist: Optional[Dist] = None,
) -> Dict[str, float]:
    """Run masked-distillation pre-training into ``out``; returns the loop's summary."""
    out = Path(out)
    device = resolve_device(cfg.train.device, "train.device")
    dist = dist or init_distributed(device)
    cfg_dict = to_dict(cfg)
    if dist.main:  # refuse early (before a teacher is loaded), but write nothing yet
        prepare_run_dir(out, cfg_dict, resume, overwrite, check_only=True)
    torch.manual_seed(cfg.train.seed)  # model initialisation: identical on every process
    distiller = build_distiller(cfg, pretrained_teacher)
    if cfg.student.attention == "flex":
        if device.type != "cuda":
            raise ValueError(
                "student.attention=flex needs a CUDA device (FlexAttention has no CPU backward); "
                "use student.attention=timm on CPU."
            )
        use_flex_attention(distiller.student)
    d = cfg.data
    dataset = SeededSamples(
        base_dataset(d.path, d),
        pretrain_transform(d.img_size, d.min_scale, d.color_jitter, d.hflip),
        mask_generator(cfg, distiller.student.grid),
        cfg.train.seed,
    )
    write_run_dir(out, cfg, resume, overwrite, dist)  # only now that teacher, student and data work
    student = distiller.student
    backbone_info = {
        "arch": student.arch,
        "kwargs": student.create_kwargs,
        "mean": list(cfg.student.mean),
        "std": list(cfg.student.std),
        "img_size": d.img_size,
    }
    job = Job(
        task=distiller,
        batch_keys=("image", "mask"),
        dataset=dataset,
        optim=cfg.optim,
        train=cfg.train,
        run_dir=out,
        backbone=lambda: (student.model, backbone_info),
        meta={"kind": "pretrain", "version": __version__, "config": cfg_dict},
        num_workers=d.num_workers,
        max_corrupt_share=d.max_corrupt_share,
    )
    return run(job, device, dist, resume=resume)
