"""One masked-distillation training step against a plain supervised timm training step of the same
student (same batch, same precision, same attention path), measured in one run.

The MD step adds the frozen teacher's forward (about a third of a training step for equal widths),
the whitening, the decoder and the masked loss; the target ratio is <= 1.45.

    # the paper's setting on a GPU: ViT-B/16 teacher, BEiT ViT-B/16 student (shared relative
    # position bias, layer scale 0.1), batch 256, bf16, blockwise masks
    python benchmarks/md_step.py --device cuda --batch 256 --compile --attention timm,flex
    # without arguments: the setting above with CUDA; on a CPU machine tiny models at batch 32
    python benchmarks/md_step.py

Teachers are built without weights (speed does not depend on them; nothing is downloaded).
Prints a table and, with --json, writes the measurements.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import time
from typing import Callable, Dict, List

import numpy as np
import timm
import torch

from maskdistill.config import load_config
from maskdistill.models.flex import use_flex_attention
from maskdistill.models.student import student_kwargs
from maskdistill.train.classify import Classifier
from maskdistill.train.loop import autocast_for
from maskdistill.train.optim import build_optimizer
from maskdistill.train.pretrain import build_distiller, mask_generator
from sizing import add_size_args, resolve_size

# A 4-block, 192-wide student of ViT-Ti/16, 26 of its 64 patches masked (also the tokenizer benchmark's).
TINY_STUDENT = [
    "student.kwargs.embed_dim=192",
    "student.kwargs.depth=4",
    "student.kwargs.num_heads=3",
    "teacher.spec=timm:vit_tiny_patch16_224",
    "mask.num_masked=26",
    "mask.min_block=4",
]
TINY = ["data.img_size=64", "student.kwargs.patch_size=8", *TINY_STUDENT]


def timed(step: Callable[[], None], steps: int, warmup: int, device: torch.device) -> float:
    """Seconds per step (median of ``steps`` after ``warmup``)."""
    for _ in range(warmup):
        step()
    times = []
    for _ in range(steps):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def sdpa_context(name: str):
    """Pin scaled_dot_product_attention to one backend ("default" leaves PyTorch's choice)."""
    if name == "default":
        return contextlib.nullcontext()
    from torch.nn.attention import SDPBackend, sdpa_kernel

    # Flash stays enabled so that attention without a bias (the teacher) keeps its fastest kernel;
    # the pinned backend serves what flash cannot (the student's relative position bias).
    pinned = {
        "cudnn": SDPBackend.CUDNN_ATTENTION,
        "efficient": SDPBackend.EFFICIENT_ATTENTION,
        "math": SDPBackend.MATH,
    }[name]
    return sdpa_kernel([SDPBackend.FLASH_ATTENTION, pinned])


def make_step(
    model: torch.nn.Module, inputs: List[torch.Tensor], device: torch.device, compile_: bool, sdpa: str = "default"
) -> Callable[[], None]:
    opt = build_optimizer(model, load_config("vit_b16_clip").optim)
    fwd = torch.compile(model) if compile_ else model

    def step() -> None:
        with autocast_for(device, "auto"), sdpa_context(sdpa):
            loss = fwd(*inputs)["loss"]
            loss.backward()
        torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], 3.0)
        opt.step()
        opt.zero_grad(set_to_none=True)

    return step


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_size_args(ap, gpu_batch=256, cpu_batch=32)
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--attention", default="timm", help="comma list of timm,flex")
    ap.add_argument("--sdpa", default="default", help="comma list of SDPA backends: default,cudnn,efficient")
    ap.add_argument("--preset", default="vit_b16_clip")
    ap.add_argument("--set", nargs="*", default=[], help="extra config overrides")
    ap.add_argument("--json", default="")
    args = ap.parse_args()
    resolve_size(args, gpu_batch=256, cpu_batch=32)
    device = torch.device(args.device)
    overrides = (TINY if args.tiny else []) + list(args.set)
    cfg = load_config(args.preset, overrides)
    B, S = args.batch, cfg.data.img_size
    torch.manual_seed(0)
    images = torch.randint(0, 256, (B, 3, S, S), dtype=torch.uint8, device=device)
    labels = torch.randint(0, 1000, (B,), device=device)
    rows: List[Dict[str, object]] = []
    combos = [(a, b) for a in args.attention.split(",") for b in args.sdpa.split(",")]
    for attn, sdpa in combos:
        if attn == "flex" and device.type != "cuda":
            print("skipping attention=flex: FlexAttention has no backward on CPU")
            continue
        distiller = build_distiller(cfg, pretrained_teacher=False).to(device)
        gen = mask_generator(cfg, distiller.student.grid)
        masks = torch.stack([torch.from_numpy(gen(np.random.default_rng(i))) for i in range(B)]).to(device)
        kw = dict(student_kwargs(cfg.student, S), num_classes=1000)
        sup = Classifier(timm.create_model(cfg.student.arch, **kw), cfg.student.mean, cfg.student.std).to(device)
        if attn == "flex":
            use_flex_attention(distiller.student)
            use_flex_attention(sup)
        try:
            t_sup = timed(make_step(sup, [images, labels], device, args.compile, sdpa), args.steps, args.warmup, device)
            t_md = timed(
                make_step(distiller, [images, masks], device, args.compile, sdpa), args.steps, args.warmup, device
            )
        except RuntimeError as e:  # a pinned backend that cannot run this attention
            print(f"attention={attn} sdpa={sdpa}: {str(e).splitlines()[0][:200]}")
            continue
        rows.append(
            {
                "attention": attn,
                "sdpa": sdpa,
                "compile": args.compile,
                "batch": B,
                "sup_img_s": B / t_sup,
                "md_img_s": B / t_md,
                "ratio_md_over_sup": t_md / t_sup,
            }
        )
        del distiller, sup
        if device.type == "cuda":
            torch.cuda.empty_cache()
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    print(f"device: {where}; torch {torch.__version__}; timm {timm.__version__}; preset {args.preset} {overrides}")
    print("| attention | sdpa | compile | batch | supervised img/s | MD img/s | MD/supervised time |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['attention']} | {r['sdpa']} | {r['compile']} | {r['batch']} | {r['sup_img_s']:.0f} | "
            f"{r['md_img_s']:.0f} | "
            f"{r['ratio_md_over_sup']:.3f} |"
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"device": where, "torch": torch.__version__, "rows": rows, "overrides": overrides}, f, indent=1)


if __name__ == "__main__":
    main()
