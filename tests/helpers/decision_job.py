"""The decision probes of a data-parallel analysis on tiny linear models: shape bias on the built-in
cue-conflict set, ``accuracy`` on built-in labelled images (through ``ProbeContext.batches``) and
OOD accuracy on parametric sets made from a folder of clean images, random distortions included.
:func:`decision_tables` runs them in one process (``SINGLE``) or as one rank of a gloo group; run
as a script under torchrun (``decision_job.py OUT``), every rank pickles what it computed to
``OUT/rank<r>.pkl``. Each result carries how many images the rank's models saw, so a test can check
that the ranks split the work as well as that they agree."""

from __future__ import annotations

import pickle
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Dict

import numpy as np
import torch
from PIL import Image

from maskdistill.data.analysis_data import parse_data
from maskdistill.data.synthetic import SHAPES
from maskdistill.models.spec import ModelInfo
from maskdistill.parallel.group import Dist
from maskdistill.probes.core.context import ProbeContext
from maskdistill.probes.core.registry import run_probe
from maskdistill.probes.decisions.model_responses import ResponseRequest, model_responses

OOD_SETS = ["uniform-noise", "phase-scrambling", "power-equalisation", "contrast"]
CUE_CONFLICT_IMAGES = 27  # odd, and not a multiple of the batch: a batch is split between the ranks
BASE_PER_CLASS = 5  # clean images per category: 10 items per condition


class Counting(torch.nn.Module):
    """A model that counts the images it is shown."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model, self.seen = model, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen += int(x.shape[0])
        return self.model(x)


def pooled_linear(num_classes: int, seed: int) -> torch.nn.Module:
    """Logits from a 4 x 4 average-pooled image, standardised over its 48 values (so that the overall
    brightness, shared by every cell, does not pick one class for every image), through a seeded
    linear map: decisions that vary from image to image, which a random tiny ViT's do not."""
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.AdaptiveAvgPool2d(4),
        torch.nn.Flatten(),
        torch.nn.LayerNorm(48, elementwise_affine=False),
        torch.nn.Linear(48, num_classes),
    )


def base_images(root: Path) -> Path:
    """Clean 16-class images (two categories of random-noise pictures, seeded)."""
    rng = np.random.default_rng(0)
    for cat in ("cat", "dog"):
        (root / cat).mkdir(parents=True, exist_ok=True)
        for i in range(BASE_PER_CLASS):
            img = rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)
            Image.fromarray(img).save(root / cat / f"{i}.png")
    return root


def decision_tables(world: Dist, root: Path) -> Dict[str, Any]:
    """The decision probes' tables, the OOD response table and the images each model saw."""
    shapes = Counting(pooled_linear(len(SHAPES), seed=0))
    info = ModelInfo("tiny", "tiny", (0.5,) * 3, (0.25,) * 3, 32, num_classes=len(SHAPES), classes=list(SHAPES))
    data = parse_data(f"builtin:cue_conflict?size=32&images={CUE_CONFLICT_IMAGES}")
    ctx = ProbeContext("tiny", shapes, info, data, images=CUE_CONFLICT_IMAGES, batch_size=4, world=world)
    sb = run_probe("shape_bias", ctx, {"stimuli": "builtin"})
    seen_sb = shapes.seen
    acc = run_probe("accuracy", ctx, {})
    seen_acc = shapes.seen - seen_sb

    imagenet = Counting(pooled_linear(1000, seed=1))
    info1k = ModelInfo("tiny1k", "tiny1k", (0.5,) * 3, (0.25,) * 3, 32, num_classes=1000)
    ood_ctx = SimpleNamespace(model=imagenet, info=info1k, name="tiny1k", memo={}, world=world, batch_size=3)
    base = base_images(root / f"base{world.rank}")
    req = ResponseRequest(datasets=OOD_SETS, base_images=str(base), seed=5)
    resp = model_responses(ood_ctx, req)
    ood = run_probe("ood_accuracy", ood_ctx, {"datasets": OOD_SETS, "base_images": str(base), "seed": 5})
    return dict(
        shape_bias=sb.table,
        shape_bias_arrays=sb.arrays,
        accuracy=acc.table,
        correct=acc.arrays["correct"],
        responses=resp,
        ood_accuracy=ood.table,
        seen=dict(shape_bias=seen_sb, accuracy=seen_acc, ood=imagenet.seen),
    )


def main(out: str) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    world = Dist(dist.get_rank(), dist.get_world_size())
    result = decision_tables(world, Path(out))
    Path(out, f"rank{world.rank}.pkl").write_bytes(pickle.dumps(result))
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])

__all__ = ["BASE_PER_CLASS", "CUE_CONFLICT_IMAGES", "OOD_SETS", "decision_tables"]
