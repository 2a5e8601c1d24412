"""A tiny classifier fine-tune with the sharpness callback, run as one process or under torchrun
(``python sharpness_job.py OUT``): the job of the DDP sharpness test. Drop path is off, so every
process of a DDP run draws the same training randomness as one process with the same global batch."""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from timm.models.vision_transformer import VisionTransformer

from maskdistill.config import OptimConfig, TrainConfig
from maskdistill.data.pipeline import SeededSamples
from maskdistill.data.synthetic import ShapesTextures
from maskdistill.data.transforms import pretrain_transform
from maskdistill.train.classify import Classifier
from maskdistill.train.job import Job
from maskdistill.train.sharpness import SharpnessCallback

FIXED = 9  # images of the fixed batch: 5 + 4 over two processes


def make_job(run_dir: Path) -> Job:
    torch.manual_seed(0)
    net = VisionTransformer(img_size=16, patch_size=8, embed_dim=8, depth=1, num_heads=2, mlp_ratio=2, num_classes=10)
    task = Classifier(net, [0.5] * 3, [0.25] * 3, label_smoothing=0.1)
    data = SeededSamples(
        ShapesTextures(num_images=32, image_size=16, seed=0), pretrain_transform(16, 0.5, 0.0, 0.5), None, seed=0
    )

    def fixed():
        items = [data[(i, 0)] for i in range(FIXED)]
        return {
            "image": torch.stack([it["image"] for it in items]),
            "label": torch.tensor([int(it["label"]) for it in items]),
        }

    return Job(
        task=task,
        batch_keys=("image", "label"),
        dataset=data,
        optim=OptimConfig(lr=1e-3, warmup_epochs=0),
        train=TrainConfig(epochs=1, batch_size=8, log_every=1, ckpt_every=100, keep_last=1, device="cpu"),
        run_dir=run_dir,
        meta={"kind": "test"},
        callbacks=[SharpnessCallback(every=2, trace_tol=0.1, trace_max_iter=60)],
        fixed_batch=fixed,
    )


def main(out: str) -> None:
    from maskdistill.parallel.group import init_distributed
    from maskdistill.train.loop import run

    device = torch.device("cpu")
    run(make_job(Path(out)), device, init_distributed(device))


if __name__ == "__main__":
    main(sys.argv[1])
