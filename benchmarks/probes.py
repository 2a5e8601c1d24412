"""All attention statistics of the paper's Sec. 3 (distance Fig. 3a, entropy Fig. 10, NMI Fig. 6a,
and the kept maps of Fig. 2) computed in the shared streaming pass, against plain inference of the
same model on the same batch, in one run Targets: >= 0.6x plain throughput
on a GPU (ViT-B/16, bf16, batch 64), >= 0.5x on CPU; peak memory independent of the number of images.

    python benchmarks/probes.py --device cuda --model vit_base_patch16_224 --batch-size 64 --dtype bf16 --json out.json
    python benchmarks/probes.py --device cpu --model vit_small_patch16_224 --batch-size 16 --dtype fp32

Plain inference is timm's own forward (fused SDPA attention, ``inference_mode``, autocast in
``--dtype``); the statistics run the same forward through ``capture`` (unfused softmax, reduced per
block on the device) via ``maskdistill.probes.core.shared_pass.run_shared_pass``. Both see one fixed random
batch (data loading is not measured; weights are random: speed does not depend on them). Timings
alternate plain / statistics ``--repeats`` times and report medians, which keeps a shared machine's
load from favouring either side. Peak memory: CUDA ``max_memory_allocated``; CPU peak RSS of a fresh
subprocess per image count (RSS cannot be reset within a process).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import resource
import subprocess
import sys
import time
from typing import Any, Dict, Iterator, List, Tuple

import numpy as np
import timm
import torch

from maskdistill.probes.core.shared_pass import run_shared_pass

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


class BenchContext:
    """The few attributes ``run_shared_pass`` reads from a ProbeContext, fed one fixed batch."""

    def __init__(self, model: torch.nn.Module, x: torch.Tensor, batches: int, dtype: torch.dtype) -> None:
        self.model, self.x, self.n, self.dtype, self.name = model, x, batches, dtype, "bench"
        self.mean, self.std, self.img_size = (0.5,) * 3, (0.5,) * 3, x.shape[-1]
        self.data = argparse.Namespace(spec="random batch")

    def batches(self, desc: str = "") -> Iterator[Tuple[torch.Tensor, torch.Tensor]]:
        for _ in range(self.n):
            yield self.x, torch.zeros(self.x.shape[0], dtype=torch.long)

    def autocast(self):
        if self.dtype == torch.float32:
            return contextlib.nullcontext()
        return torch.autocast(self.x.device.type, dtype=self.dtype)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def plain(model: torch.nn.Module, ctx: BenchContext) -> None:
    with torch.inference_mode(), ctx.autocast():
        for x, _ in ctx.batches():
            model(x)


def stats(model: torch.nn.Module, ctx: BenchContext) -> None:
    run_shared_pass(ctx, {"attention"})


def timed(fn, model, ctx, device) -> float:
    _sync(device)
    t = time.perf_counter()
    fn(model, ctx)
    _sync(device)
    return time.perf_counter() - t


def build(args: argparse.Namespace, device: torch.device) -> Tuple[torch.nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    model = timm.create_model(args.model, pretrained=False).eval().to(device)
    size = model.patch_embed.img_size
    x = torch.randn(args.batch_size, 3, *size, device=device)
    return model, x


def peak_memory(args: argparse.Namespace, device: torch.device, batches: int) -> float:
    """Peak MiB while the statistics stream ``batches`` batches."""
    if device.type == "cuda":
        model, x = build(args, device)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
        stats(model, BenchContext(model, x, batches, DTYPES[args.dtype]))
        return torch.cuda.max_memory_allocated(device) / 2**20
    cmd = [
        sys.executable,
        __file__,
        "--device",
        "cpu",
        "--model",
        args.model,
        "--batch-size",
        str(args.batch_size),
        "--dtype",
        args.dtype,
        "--_rss-run",
        str(batches),
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def main(argv: List[str] | None = None) -> Dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="auto")
    p.add_argument("--model", default=None, help="default vit_base_patch16_224 on CUDA, vit_small_patch16_224 on CPU")
    p.add_argument("--batch-size", type=int, default=None, help="default 64 on CUDA, 16 on CPU")
    p.add_argument("--dtype", default=None, choices=sorted(DTYPES), help="default bf16 on CUDA, fp32 on CPU")
    p.add_argument("--batches", type=int, default=3, help="batches per timed run")
    p.add_argument("--repeats", type=int, default=5, help="alternating plain/statistics runs (median)")
    p.add_argument("--memory-batches", default="2,8", help="image counts (in batches) for the memory check")
    p.add_argument("--json", default=None, help="write the measurements here")
    p.add_argument("--_rss-run", type=int, default=0, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device)
    cpu = device.type == "cpu"  # without arguments: the second example of the docstring on a CPU machine
    args.model = args.model or ("vit_small_patch16_224" if cpu else "vit_base_patch16_224")
    args.batch_size = args.batch_size or (16 if cpu else 64)
    args.dtype = args.dtype or ("fp32" if cpu else "bf16")
    if args._rss_run:  # subprocess of the CPU memory check: run, print peak RSS in MiB
        model, x = build(args, device)
        stats(model, BenchContext(model, x, args._rss_run, DTYPES[args.dtype]))
        print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
        return {}
    model, x = build(args, device)
    ctx = BenchContext(model, x, args.batches, DTYPES[args.dtype])
    plain(model, BenchContext(model, x, 1, ctx.dtype))  # warm-up both paths
    stats(model, BenchContext(model, x, 1, ctx.dtype))
    t_plain, t_stats = [], []
    for _ in range(args.repeats):
        t_plain.append(timed(plain, model, ctx, device))
        t_stats.append(timed(stats, model, ctx, device))
    imgs = args.batches * args.batch_size
    ips_plain, ips_stats = imgs / float(np.median(t_plain)), imgs / float(np.median(t_stats))
    mem = {int(b) * args.batch_size: peak_memory(args, device, int(b)) for b in args.memory_batches.split(",")}
    res = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "timm": timm.__version__,
        "model": args.model,
        "batch_size": args.batch_size,
        "dtype": args.dtype,
        "batches": args.batches,
        "repeats": args.repeats,
        "plain_img_per_s": round(ips_plain, 2),
        "stats_img_per_s": round(ips_stats, 2),
        "ratio": round(ips_stats / ips_plain, 3),
        "peak_mib_by_images": {k: round(v, 1) for k, v in mem.items()},
        "peak_memory": "cuda max_memory_allocated" if device.type == "cuda" else "peak RSS of a fresh process",
    }
    target = 0.6 if device.type == "cuda" else 0.5
    print(
        f"{args.model} on {res['device']} ({args.dtype}, batch {args.batch_size}): plain {ips_plain:.1f} img/s, "
        f"attention statistics {ips_stats:.1f} img/s -> ratio {res['ratio']:.3f} (target >= {target})"
    )
    print("peak memory (MiB) by number of images: " + ", ".join(f"{k}: {v:.1f}" for k, v in mem.items()))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=1)
    return res


if __name__ == "__main__":
    main()
