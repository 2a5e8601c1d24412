"""The size of a benchmark's run without arguments: the GPU setting on a machine with CUDA, a
CPU-sized one (tiny models, a small batch) elsewhere, so that ``python benchmarks/<name>.py`` fits
the machine it runs on (the GPU setting on a CPU is killed for memory). Explicit arguments win:
``--device cpu --no-tiny --batch 256`` still measures the full size on a CPU."""

from __future__ import annotations

import argparse

import torch


def add_size_args(ap: argparse.ArgumentParser, gpu_batch: int, cpu_batch: int) -> None:
    """``--device``, ``--batch``, ``--tiny/--no-tiny``, ``--steps`` and ``--warmup``, each defaulting
    by the device."""
    ap.add_argument("--device", default=None, help="cuda | cpu (default: cuda when available)")
    ap.add_argument("--batch", type=int, default=None, help=f"default {gpu_batch} on CUDA, {cpu_batch} on CPU")
    ap.add_argument(
        "--tiny", action=argparse.BooleanOptionalAction, default=None, help="tiny models (default: on CPU only)"
    )
    ap.add_argument("--steps", type=int, default=None, help="timed steps (default 20 on CUDA, 5 on CPU)")
    ap.add_argument("--warmup", type=int, default=None, help="untimed steps first (default 5 on CUDA, 2 on CPU)")


def resolve_size(args: argparse.Namespace, gpu_batch: int, cpu_batch: int) -> None:
    """Fill in the defaults ``add_size_args`` left open, and print what was chosen."""
    args.device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    cpu = torch.device(args.device).type == "cpu"
    args.tiny = cpu if args.tiny is None else args.tiny
    args.batch = (cpu_batch if cpu else gpu_batch) if args.batch is None else args.batch
    args.steps = (5 if cpu else 20) if args.steps is None else args.steps
    args.warmup = (2 if cpu else 5) if args.warmup is None else args.warmup
    note = f"size: device {args.device}, batch {args.batch}, {'tiny' if args.tiny else 'full-size'} models"
    note += f", {args.steps} timed steps"
    if cpu and args.tiny:
        note += f" (the CPU default; the GPU setting is --device cuda --batch {gpu_batch} --no-tiny)"
    print(note, flush=True)
