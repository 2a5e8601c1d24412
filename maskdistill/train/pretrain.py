"""Masked-distillation pre-training (paper Sec. 2, Eq. 1): build the teacher T, whitening N,
student S, decoder D, masks M and objective R from a ``PretrainConfig``, and train the student with
the shared loop; ``describe_plan`` is what ``pretrain --dry-run`` prints."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Dict, Optional, Sequence

from maskdistill.config import PretrainConfig
from maskdistill.data.masking import make_mask_generator
from maskdistill.data.sources import base_dataset
from maskdistill.distill.distiller import MaskedDistiller
from maskdistill.distill.parts import Whitening, build_decoder
from maskdistill.models.flex import use_flex_attention
from maskdistill.models.student import build_student
from maskdistill.models.teacher import build_teacher, describe
from maskdistill.parallel.group import Dist
from maskdistill.train.session import Session

log = logging.getLogger(__name__)


def build_distiller(cfg: PretrainConfig, pretrained_teacher: bool = True) -> MaskedDistiller:
    img = cfg.data.img_size
    student = build_student(cfg.student, img)
    in_chans = int(student.model.patch_embed.proj.in_channels)
    if cfg.decoder.kind == "tokenizer":  # BEiT v2: the targets are a VQ-KD tokenizer's codes
        from maskdistill.distill.code_teacher import load_code_teacher

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


def pretrain(
    cfg: PretrainConfig,
    out: str | Path,
    resume: bool = False,
    overwrite: bool = False,
    pretrained_teacher: bool = True,
    dist: Optional[Dist] = None,
) -> Dict[str, float]:
    """Run masked-distillation pre-training into ``out``; returns the loop's summary."""
    session = Session.open(cfg, out, resume, overwrite, dist)
    distiller = build_distiller(cfg, pretrained_teacher)
    if cfg.student.attention == "flex":
        if session.device.type != "cuda":
            raise ValueError(
                "student.attention=flex needs a CUDA device (FlexAttention has no CPU backward); "
                "use student.attention=timm on CPU."
            )
        use_flex_attention(distiller.student)
    student = distiller.student
    dataset = session.samples(mask_generator(cfg, student.grid))
    session.start()  # only now that teacher, student and data work
    backbone_info = {
        "arch": student.arch,
        "kwargs": student.create_kwargs,
        "mean": list(cfg.student.mean),
        "std": list(cfg.student.std),
        "img_size": cfg.data.img_size,
    }
    job = session.job(
        distiller,
        ("image", "mask"),
        dataset,
        session.meta("pretrain"),
        backbone=lambda: (student.model, backbone_info),
    )
    return session.run(job)


def describe_plan(cfg: PretrainConfig) -> str:
    """What ``maskdistill pretrain --dry-run`` prints: parameter counts of student and decoder, the
    teacher's target width, the optimizer's parameter groups and the step plan of the data. The
    teacher is built without weights, so nothing is downloaded; a data folder that cannot be read is
    reported in the plan instead of stopping it."""
    from maskdistill.train.job import plan_steps
    from maskdistill.train.optim import build_optimizer

    distiller = build_distiller(cfg, pretrained_teacher=False)
    n_student = sum(p.numel() for p in distiller.student.parameters())
    n_decoder = sum(p.numel() for p in distiller.decoder.parameters())
    opt = build_optimizer(distiller, cfg.optim)
    lines = [
        f"student {cfg.student.arch}: {n_student:,} parameters (incl. mask token); decoder "
        f"{cfg.decoder.kind}: {n_decoder:,}; teacher {cfg.teacher.spec}: {distiller.teacher.dim}-d targets",
        f"optimizer AdamW betas={tuple(cfg.optim.betas)} lr={cfg.optim.lr} wd={cfg.optim.weight_decay} "
        f"({sum(p.numel() for p in opt.param_groups[0]['params']):,} decayed / "
        f"{sum(p.numel() for p in opt.param_groups[1]['params']):,} not decayed)",
    ]
    try:
        n = len(base_dataset(cfg.data.path, cfg.data))
        spe, total, warmup, stop = plan_steps(n, cfg.train, cfg.optim)
        lines.append(f"data: {n:,} images, {spe} steps/epoch, {total} steps ({warmup} warm-up)")
    except (FileNotFoundError, ValueError) as e:
        lines.append(f"data: {e}")
    return "\n".join(lines)
