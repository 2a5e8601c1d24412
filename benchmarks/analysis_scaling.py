"""Parallel efficiency of the data-parallel analysis: 1 process vs P processes on the same images,
for the streaming attention/representation pass (every statistics group, the per-image values of
the intervals, the reduction across processes) and for one Hessian-vector product (the processes'
products over their shares, all-reduced). E = T1 / (P * TP); target >= 0.8 on 2 CPU cores with one
thread per process.

    python benchmarks/analysis_scaling.py                          # CPU: gloo, 1 vs 2 processes
    python benchmarks/analysis_scaling.py --processes 4 --images 256 --hessian-images 128
    python benchmarks/analysis_scaling.py --device cuda            # NCCL, one GPU per process

On CUDA with fewer GPUs than processes (one GPU), P processes cannot be measured: the script then
times the distributed path's overhead instead -- one process through an initialised process group
whose reductions run (a 1-rank all-reduce of every sum and product) against the plain one-process
path; target <= 5 %.

Timed inside the processes, after a barrier, the median of ``--repeats`` runs after one untimed
run: process start-up, model building and the Hessian's gradient graph are outside the times. The
pass includes making the images (the built-in set) and the model's transform, as a real run does.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import tempfile
from pathlib import Path
from typing import Any, Callable, Dict, List

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

CPU_MODEL = "timm:vit_tiny_patch16_224?pretrained=false&num_classes=10"
GPU_MODEL = "timm:vit_base_patch16_224?pretrained=false&num_classes=10"


class _Reducing:
    """A one-process group whose reductions still run (``enabled``), for the overhead on one GPU."""

    rank, world, local_rank, main, enabled = 0, 1, 0, True, True


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _median_seconds(fn: Callable[[], Any], repeats: int, device: torch.device) -> float:
    """Median wall time of ``fn`` over ``repeats`` runs, each started together on every rank."""
    from maskdistill.probes.core.plan import seconds_of

    fn()  # untimed: first-call costs
    times = []
    for _ in range(repeats):
        if dist.is_initialized():
            dist.barrier()
        times.append(seconds_of(fn, device))
    return statistics.median(times)


def _measure(world: Any, args: argparse.Namespace, device: torch.device) -> Dict[str, float]:
    """(pass seconds, product seconds) of this process, on its share of the images."""
    from torch import nn

    from maskdistill.data.analysis_data import parse_data
    from maskdistill.models.modes import curvature_mode
    from maskdistill.probes.core.context import ProbeContext
    from maskdistill.probes.core.shared_pass import group_names, run_shared_pass
    from maskdistill.probes.curvature.hvp import HessianOperator

    data = parse_data(f"builtin:val?size={args.size}")
    ctx = ProbeContext.from_spec(
        "bench", args.model, data, device, images=args.images, batch_size=args.batch, labels="folder-order",
        world=world, progress=False, bootstrap=None, hessian_images=args.hessian_images,
    )  # fmt: skip
    groups = set(group_names())
    t_pass = _median_seconds(lambda: run_shared_pass(ctx, groups), args.repeats, device)
    batches = ctx.labelled_batches(1, args.hessian_batch, images=args.hessian_images)
    with curvature_mode(ctx.model):
        op = HessianOperator(ctx.model, nn.CrossEntropyLoss(), batches)
        v = torch.randn(op.n, generator=torch.Generator().manual_seed(0)).to(op.device, op.dtype)
        t_hvp = _median_seconds(lambda: op.matvec(v), args.repeats, device)
    return {"pass": t_pass, "hvp": t_hvp, "images": args.images, "hessian_images": args.hessian_images}


def _worker(rank: int, world_size: int, port: int, args: argparse.Namespace, out: str, reducing: bool) -> None:
    torch.set_num_threads(args.threads)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world_size))
    os.environ["LOCAL_RANK"] = str(rank)
    device = torch.device(f"cuda:{rank}" if args.device == "cuda" else "cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    from maskdistill.parallel.group import SINGLE, Dist

    if world_size > 1 or reducing:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", rank=rank, world_size=world_size)
    world = _Reducing() if reducing else (Dist(rank, world_size, rank) if world_size > 1 else SINGLE)
    res = _measure(world, args, device)
    if rank == 0:
        Path(out).write_text(json.dumps(res))
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def run(processes: int, args: argparse.Namespace, reducing: bool = False) -> Dict[str, float]:
    """Spawn ``processes`` workers and return rank 0's times."""
    with tempfile.TemporaryDirectory() as tmp:
        out = str(Path(tmp) / "times.json")
        mp.spawn(_worker, args=(processes, _free_port(), args, out, reducing), nprocs=processes, join=True)
        return json.loads(Path(out).read_text())


def parse(argv: List[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default=None, help="cpu | cuda (default: cuda when available)")
    ap.add_argument("--processes", type=int, default=2)
    ap.add_argument("--model", default=None, help=f"default {CPU_MODEL} on CPU, {GPU_MODEL} on CUDA")
    ap.add_argument("--images", type=int, default=None, help="images of the pass (default 64 on CPU, 2048 on CUDA)")
    ap.add_argument("--hessian-images", type=int, default=None, help="images of the product (default 32 / 512)")
    ap.add_argument("--batch", type=int, default=16, help="batch of the pass")
    ap.add_argument("--hessian-batch", type=int, default=32)
    ap.add_argument("--size", type=int, default=224, help="side of the built-in images")
    ap.add_argument("--threads", type=int, default=1, help="threads per process")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", type=Path, default=None, help="write the figures here too")
    args = ap.parse_args(argv)
    args.device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    cuda = args.device == "cuda"
    args.model = args.model or (GPU_MODEL if cuda else CPU_MODEL)
    args.images = args.images or (2048 if cuda else 64)
    args.hessian_images = args.hessian_images or (512 if cuda else 32)
    if cuda:
        args.batch = max(args.batch, 128)
    return args


def main(argv: List[str] | None = None) -> Dict[str, Any]:
    args = parse(argv)
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    p = args.processes
    gpus = torch.cuda.device_count() if args.device == "cuda" else 0
    print(
        f"{args.model}, {args.images} images (pass), {args.hessian_images} (product), device {args.device}, "
        f"{args.threads} thread(s) per process, load average {os.getloadavg()[0]:.1f}",
        flush=True,
    )
    one = run(1, args)
    report: Dict[str, Any] = {"args": {k: str(v) for k, v in vars(args).items()}, "one": one}
    if args.device == "cuda" and gpus < p:
        via = run(1, args, reducing=True)
        report["overhead"] = {k: via[k] / one[k] - 1 for k in ("pass", "hvp")}
        print(f"{'':24s} {'plain':>9s} {'via group':>10s} {'overhead':>9s}")
        for k, name in (("pass", "streaming pass"), ("hvp", "Hessian-vector product")):
            print(f"{name:24s} {one[k]:8.3f}s {via[k]:9.3f}s {100 * report['overhead'][k]:+8.1f}%  (target <= +5 %)")
    else:
        many = run(p, args)
        report[f"p{p}"] = many
        report["efficiency"] = {k: one[k] / (p * many[k]) for k in ("pass", "hvp")}
        print(f"{'':24s} {'1 process':>10s} {f'{p} processes':>12s} {'speed-up':>9s} {'efficiency':>11s}")
        for k, name in (("pass", "streaming pass"), ("hvp", "Hessian-vector product")):
            e = report["efficiency"][k]
            print(f"{name:24s} {one[k]:9.3f}s {many[k]:11.3f}s {one[k] / many[k]:8.2f}x {e:10.2f}  (target >= 0.8)")
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
    return report


if __name__ == "__main__":
    main()
