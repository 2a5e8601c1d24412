"""Evaluation throughput of the decision probes against plain inference of the same model on the same
batches, measured in one run (target >= 0.8x).

"Plain": ``model(x)`` on every batch. "Decisions": the same forward passes plus what the probes add --
the decision mapping (softmax, mean over each category's ImageNet indices, arg-max; kept on the
device) and, at the end, the model-vs-human response table (names, trials, image names). Batches are
pre-made normalised tensors, so image decoding (the same for both) is not part of either number.

    python benchmarks/decisions.py                       # CPU, timm test_vit (1000 classes), 160 px
    python benchmarks/decisions.py --model vit_tiny_patch16_224 --batch 64 --device cuda
    python benchmarks/decisions.py --json out.json

Models are built without weights (speed does not depend on them; nothing is downloaded).
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import time
from typing import Callable, Dict, List

import timm
import torch

from maskdistill.probes.decisions.evaluate import DecisionRecorder
from maskdistill.probes.decisions.imagenet16 import categories16
from maskdistill.probes.decisions.responses import make_responses


def _timed(fn: Callable[[], None], device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t


def run(model_name: str, batch: int, n_batches: int, device: str, threads: int, repeats: int) -> Dict[str, object]:
    if threads:
        torch.set_num_threads(threads)
    dev = torch.device(device)
    model = timm.create_model(model_name, pretrained=False).eval().to(dev)
    size = model.pretrained_cfg["input_size"][-1]
    if int(getattr(model, "num_classes", 0)) != 1000:
        raise ValueError(f"{model_name} has {model.num_classes} outputs; the 16-class mapping needs 1000.")
    g = torch.Generator().manual_seed(0)
    batches = [torch.randn(batch, 3, size, size, generator=g).to(dev) for _ in range(n_batches)]
    cats = list(categories16())
    n = batch * n_batches
    meta_cats = [cats[i % 16] for i in range(n)]

    def plain() -> None:
        with torch.inference_mode():
            for x in batches:
                model(x)

    def decisions() -> None:
        with torch.inference_mode():
            rec = DecisionRecorder(cats)
            for x in batches:
                rec.add(model(x))
            make_responses("model", "bench", meta_cats, ["0"] * n, [f"img{i}.png" for i in range(n)], rec.decisions())

    plain()  # warm-up (allocator, kernels)
    decisions()
    t_plain: List[float] = []
    t_dec: List[float] = []
    for _ in range(repeats):  # interleaved, so both see the same machine load
        t_plain.append(_timed(plain, dev))
        t_dec.append(_timed(decisions, dev))
    best_plain, best_dec = min(t_plain), min(t_dec)
    return {
        "date": datetime.date.today().isoformat(),
        "model": model_name,
        "img_size": size,
        "batch": batch,
        "batches": n_batches,
        "device": str(dev),
        "threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "plain_img_per_s": n / best_plain,
        "decisions_img_per_s": n / best_dec,
        "ratio": best_plain / best_dec,
        "repeats": repeats,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="test_vit")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--batches", type=int, default=8)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (0 = torch's default)")
    p.add_argument("--repeats", type=int, default=5, help="timed repeats; the best of each is reported")
    p.add_argument("--json", default="")
    a = p.parse_args()
    r = run(a.model, a.batch, a.batches, a.device, a.threads, a.repeats)
    print(
        f"{r['model']} {r['img_size']}px, batch {r['batch']} x {r['batches']}, {r['device']} "
        f"({r['threads']} threads), torch {r['torch']}"
    )
    print(f"plain inference      {r['plain_img_per_s']:9.1f} img/s")
    print(f"with decisions+table {r['decisions_img_per_s']:9.1f} img/s   ratio {r['ratio']:.3f} (target >= 0.8)")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(r, f, indent=1)


if __name__ == "__main__":
    main()
