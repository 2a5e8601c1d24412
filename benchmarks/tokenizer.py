"""One MD training step with code targets (BEiT v2: a frozen VQ-KD tokenizer gives the targets, D is
a linear map to K logits, R the cross-entropy; paper Sec. 5 / App. B) against one MD step with fc
targets (the CLIP teacher's whitened features, D linear, smooth-L1), same student, same batch, one run.

On the target side the fc step runs the teacher; the code step runs the tokenizer instead (encoder,
task layer, cosine lookup in the codebook): BEiT v2 never needs the CLIP teacher after training the
tokenizer. With equal encoders the two forwards cost about the same, so the ratio should be close to
1; the rest is the larger head (width -> K = 8192 logits) and the cross-entropy. The script also
times both target-side forwards alone, so the difference can be attributed.

    # the paper's setting on a GPU: CLIP ViT-B/16 teacher vs the VQ-KD tokenizer of Table 1
    python benchmarks/tokenizer.py --device cuda --batch 256 --compile
    # without arguments: the setting above with CUDA; on a CPU machine tiny models at batch 32
    python benchmarks/tokenizer.py

Teacher and tokenizer are built without trained weights (speed does not depend on them; nothing
is downloaded). Prints a table and, with --json, writes the measurements.
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import time
from typing import Callable, Dict, List, Sequence

import numpy as np
import timm
import torch
from torch import nn

from maskdistill.config import ObjectiveConfig, load_config
from maskdistill.distill.code_teacher import CodeTeacher
from maskdistill.distill.distiller import MaskedDistiller
from maskdistill.distill.parts import Whitening
from maskdistill.distill.tokenizer_build import build_vqkd
from maskdistill.train.loop import autocast_for
from maskdistill.train.pretrain import build_distiller, mask_generator
from maskdistill.train.vqkd import TokenizerConfig
from md_step import TINY_STUDENT, make_step
from sizing import add_size_args, resolve_size

# 128 px, patch 16 (8x8 grid): a 4-block student; teacher ViT-Ti/16 (12 blocks, width 192); the
# tokenizer's encoder the same ViT-Ti/16 shape, codebook 8192 x 32.
TINY = ["data.img_size=128", *TINY_STUDENT]
TINY_TOKENIZER = ["tokenizer.arch=vit_tiny_patch16_224", "data.img_size=128"]


def code_distiller(
    fc: MaskedDistiller, tok_cfg: TokenizerConfig, img_size: int, loss_on: str, mean, std, num_masked: int
) -> MaskedDistiller:
    """The same student (a copy, same weights) with code targets from an untrained tokenizer."""
    tok = build_vqkd(tok_cfg.tokenizer, img_size, target_dim=fc.teacher.dim)
    tok.codebook.initted.fill_(True)  # random unit codes: lookup cost does not depend on them
    teacher = CodeTeacher(tok, "VQ-KD (untrained)")
    student = copy.deepcopy(fc.student)
    decoder = nn.Linear(student.embed_dim, tok.num_codes)
    return MaskedDistiller(
        teacher,
        student,
        decoder,
        Whitening("none"),
        ObjectiveConfig(loss="ce"),
        loss_on,
        mean,
        std,
        num_masked=num_masked,
    )


def timed_interleaved(steps: Sequence[Callable[[], None]], n: int, warmup: int, device: torch.device) -> List[float]:
    """Seconds per call of each step (median of ``n``), the steps taking turns, so that a change of
    machine load during the run affects all of them alike."""
    for _ in range(warmup):
        for step in steps:
            step()
    times: List[List[float]] = [[] for _ in steps]
    for _ in range(n):
        for i, step in enumerate(steps):
            if device.type == "cuda":
                torch.cuda.synchronize()
            t = time.perf_counter()
            step()
            if device.type == "cuda":
                torch.cuda.synchronize()
            times[i].append(time.perf_counter() - t)
    return [float(np.median(t)) for t in times]


def forward_only(module: nn.Module, x: torch.Tensor, device: torch.device):
    def step() -> None:
        with torch.no_grad(), autocast_for(device, "auto"):
            module(x)

    return step


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_size_args(ap, gpu_batch=256, cpu_batch=32)
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--preset", default="vit_b16_clip")
    ap.add_argument("--tokenizer", default="vqkd_b16_clip", help="tokenizer preset")
    ap.add_argument("--set", nargs="*", default=[], help="extra pre-training config overrides")
    ap.add_argument("--threads", type=int, default=0, help="CPU threads (0 = torch's default)")
    ap.add_argument("--json", default="")
    args = ap.parse_args()
    resolve_size(args, gpu_batch=256, cpu_batch=32)
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    overrides = (TINY if args.tiny else []) + list(args.set)
    cfg = load_config(args.preset, overrides)
    tcfg = load_config(
        args.tokenizer,
        TINY_TOKENIZER if args.tiny else [f"data.img_size={cfg.data.img_size}"],
        schema=TokenizerConfig,
        kind="tokenizer",
    )
    B, S = args.batch, cfg.data.img_size
    torch.manual_seed(0)
    fc = build_distiller(cfg, pretrained_teacher=False)
    gen = mask_generator(cfg, fc.student.grid)
    code = code_distiller(fc, tcfg, S, cfg.mask.loss_on, cfg.student.mean, cfg.student.std, gen.num_masked)
    fc, code = fc.to(device), code.to(device)
    images = torch.randint(0, 256, (B, 3, S, S), dtype=torch.uint8, device=device)
    masks = torch.stack([torch.from_numpy(gen(np.random.default_rng(i))) for i in range(B)]).to(device)
    x = images.float() / 255
    t_teacher, t_tokenizer, t_fc, t_code = timed_interleaved(
        [
            forward_only(fc.teacher, x, device),
            forward_only(code.teacher, x, device),
            make_step(fc, [images, masks], device, args.compile),
            make_step(code, [images, masks], device, args.compile),
        ],
        args.steps,
        args.warmup,
        device,
    )
    row: Dict[str, object] = {
        "batch": B,
        "compile": args.compile,
        "fc_step_ms": 1e3 * t_fc,
        "code_step_ms": 1e3 * t_code,
        "ratio_code_over_fc": t_code / t_fc,
        "teacher_fwd_ms": 1e3 * t_teacher,
        "tokenizer_fwd_ms": 1e3 * t_tokenizer,
        "extra_ms": 1e3 * (t_code - t_fc),
        "tokenizer_minus_teacher_ms": 1e3 * (t_tokenizer - t_teacher),
        "num_codes": code.teacher.dim,
        "teacher_dim": fc.teacher.dim,
    }
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    threads = torch.get_num_threads()
    print(
        f"device: {where} ({threads} threads); torch {torch.__version__}; timm {timm.__version__}; "
        f"preset {args.preset} {overrides}; tokenizer {args.tokenizer}"
    )
    print(
        "| batch | fc step ms | code step ms | code/fc | teacher fwd ms | tokenizer fwd ms | extra ms | "
        "tokenizer - teacher ms |"
    )
    print("|---|---|---|---|---|---|---|---|")
    r = row
    print(
        f"| {r['batch']} | {r['fc_step_ms']:.1f} | {r['code_step_ms']:.1f} | {r['ratio_code_over_fc']:.3f} | "
        f"{r['teacher_fwd_ms']:.1f} | {r['tokenizer_fwd_ms']:.1f} | {r['extra_ms']:.1f} | "
        f"{r['tokenizer_minus_teacher_ms']:.1f} |"
    )
    if args.json:
        rows: List[Dict[str, object]] = [row]
        with open(args.json, "w") as f:
            json.dump(
                {"device": where, "threads": threads, "torch": torch.__version__, "rows": rows, "overrides": overrides},
                f,
                indent=1,
            )


if __name__ == "__main__":
    main()
