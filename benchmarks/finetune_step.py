"""Our fine-tuning step against a plain timm training step of the same model, same batch, same
precision, measured in one run (target ratio <= 1.10).

"Ours" is the real training loop (``maskdistill.train.loop.run``) with the fine-tuning task of
``maskdistill finetune``: layer-wise lr decay (28 AdamW groups for ViT-B/16), frozen patch
projection, label smoothing, per-step cosine schedule, clipping, the metrics CSV and TensorBoard,
optionally EMA. "Plain" is model -> cross-entropy -> backward -> AdamW -> zero_grad. Both read
the same pre-made batches through a DataLoader, so augmentation cost is left out of both. A step
time is (time for W+N steps - time for W steps) / N, which cancels set-up and warm-up.

    python benchmarks/finetune_step.py --device cuda --model vit_base_patch16_224 --batch 64
    python benchmarks/finetune_step.py                   # on a CPU machine: a small ViT at 64 px, batch 16
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Dict

import timm
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch.utils.data import DataLoader, Dataset

from maskdistill.config import load_config
from maskdistill.parallel.group import Dist
from maskdistill.train.finetune import build_task
from maskdistill.train.finetune_config import FinetuneConfig
from maskdistill.train.job import Job
from maskdistill.train.layer_decay import layer_decay_groups
from maskdistill.train.loop import autocast_for, run
from sizing import add_size_args, resolve_size

TINY_KW = dict(img_size=64, patch_size=8, embed_dim=192, depth=4, num_heads=3)


class Batches(Dataset):
    """``n`` copies of one pre-made batch's items, keyed like SeededSamples ((index, epoch))."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, n: int):
        self.images, self.labels, self.n = images, labels, n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, key):
        i = (key[0] if isinstance(key, tuple) else key) % len(self.images)
        return {"image": self.images[i], "label": int(self.labels[i]), "bad": 0}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def ours(cfg: FinetuneConfig, data: Batches, steps: int, device: torch.device, out: Path) -> float:
    task, info, _ = build_task(cfg, 1000)
    cfg.train.max_steps = steps
    after = (lambda s: task.ema.update(task.model, s)) if task.ema is not None else None
    job = Job(
        task=task,
        batch_keys=("image", "label"),
        dataset=data,
        optim=cfg.optim,
        train=cfg.train,
        run_dir=out,
        meta={"kind": "benchmark"},
        backbone=None,
        param_groups=lambda: layer_decay_groups(task, cfg.optim.weight_decay, cfg.optim.layer_decay, prefix="model."),
        after_step=after,
    )
    sync(device)
    t = time.perf_counter()
    run(job, device, Dist())
    sync(device)
    return time.perf_counter() - t


def plain(arch: str, kw: Dict, data: Batches, batch: int, steps: int, device: torch.device, lr: float) -> float:
    model = timm.create_model(arch, pretrained=False, num_classes=1000, **kw).to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.05, fused=device.type == "cuda" or None)
    loader = DataLoader(data, batch_size=batch, shuffle=False, pin_memory=device.type == "cuda")
    sync(device)
    t = time.perf_counter()
    it = iter(loader)
    for _ in range(steps):
        b = next(it)
        x, y = b["image"].to(device, non_blocking=True), b["label"].to(device, non_blocking=True)
        with autocast_for(device, "auto"):
            loss = F.cross_entropy(model(x).float(), y, label_smoothing=0.1)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    sync(device)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_size_args(ap, gpu_batch=64, cpu_batch=16)
    ap.add_argument("--model", default="vit_base_patch16_224")
    ap.add_argument("--repeats", type=int, default=3, help="interleaved repeats; the median ratio is reported")
    ap.add_argument("--ema", action="store_true")
    ap.add_argument("--json", default="")
    args = ap.parse_args()
    resolve_size(args, gpu_batch=64, cpu_batch=16)
    logging.basicConfig(level=logging.WARNING)
    device = torch.device(args.device)
    kw = dict(TINY_KW) if args.tiny else {}
    img = kw.pop("img_size", 224)
    B, W, N = args.batch, args.warmup, args.steps
    torch.manual_seed(0)
    images, labels = torch.randn(B, 3, img, img), torch.randint(0, 1000, (B,))
    data = Batches(images, labels, B * (W + N + 1))
    with tempfile.TemporaryDirectory() as tmp:
        weights = Path(tmp) / "w.safetensors"
        m = timm.create_model(args.model, pretrained=False, num_classes=0, img_size=img, **kw)
        save_file({k: v.contiguous() for k, v in m.state_dict().items()}, str(weights))
        over = [
            f"model.spec=timm:{args.model}@{weights}",
            f"data.img_size={img}",
            f"train.batch_size={B}",
            f"train.device={args.device}",
            "train.log_every=1000000",
            "train.ckpt_every=1000000",
            f"train.epochs={(W + N + 1)}",
            f"ema.enabled={args.ema}",
            "ema.decay=0.999",
            *[f"model.kwargs.{k}={v}" for k, v in kw.items()],
        ]
        cfg = lambda: load_config("vit_b16_paper", over, schema=FinetuneConfig, kind="finetune")  # noqa: E731
        # (W+N) - W steps; the loop saves one final checkpoint in both runs, which cancels too. A first
        # 1-step run of each pays one-time costs (imports, TensorBoard, allocator) outside the difference.
        run_ours = lambda n, d: ours(cfg(), data, n, device, Path(tmp) / d)  # noqa: E731
        run_plain = lambda n: plain(args.model, dict(kw, img_size=img), data, B, n, device, 5e-5)  # noqa: E731
        run_ours(1, "warm"), run_plain(1)
        # Repeats interleave ours and plain, so that a change in machine load (CPU runs) hits both
        # alike; the ratio reported is the median of the per-repeat ratios.
        times = {"ours": [], "plain": []}
        for r in range(args.repeats):
            times["ours"].append((-run_ours(W, f"a{r}") + run_ours(W + N, f"b{r}")) / N)
            times["plain"].append((-run_plain(W) + run_plain(W + N)) / N)
        ratios = sorted(o / p for o, p in zip(times["ours"], times["plain"]))
        t_ours, t_plain = (statistics.median(times[k]) for k in ("ours", "plain"))
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    row = {
        "device": where,
        "torch": torch.__version__,
        "timm": timm.__version__,
        "model": args.model,
        "tiny": args.tiny,
        "batch": B,
        "ema": args.ema,
        "plain_img_s": B / t_plain,
        "ours_img_s": B / t_ours,
        "ratio_ours_over_plain": statistics.median(ratios),
        "ratios": ratios,
        "steps": N,
        "warmup_steps": W,
    }
    print(
        f"device: {where}; torch {torch.__version__}; timm {timm.__version__}; "
        f"{args.model}{' (tiny)' if args.tiny else ''}"
    )
    print(
        "| batch | EMA | plain timm img/s | maskdistill finetune img/s | time ratio (median) | per repeat |\n"
        "|---|---|---|---|---|---|"
    )
    print(
        f"| {B} | {args.ema} | {row['plain_img_s']:.1f} | {row['ours_img_s']:.1f} | "
        f"{row['ratio_ours_over_plain']:.3f} | "
        f"{', '.join(f'{r:.3f}' for r in ratios)} |"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(row, indent=1))


if __name__ == "__main__":
    main()
