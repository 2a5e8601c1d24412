"""The loop on its own (``maskdistill.train.loop.run``) with a task that is not the distiller: it
trains any module that returns ``{"loss"}``, in train mode, on the configured schedule."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from maskdistill.config import OptimConfig, TrainConfig
from maskdistill.data.pipeline import SeededSamples
from maskdistill.data.synthetic import ShapesTextures
from maskdistill.data.transforms import pretrain_transform
from maskdistill.parallel.group import Dist
from maskdistill.runs.metrics import read_metrics
from maskdistill.train.job import Job
from maskdistill.train.loop import run
from maskdistill.train.optim import cosine_lr


class TinyClassifier(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3, 10)
        self.modes = []

    def forward(self, images, labels):
        self.modes.append(self.training)
        x = images.float().mean((2, 3)) / 255  # (B, 3)
        return {"loss": nn.functional.cross_entropy(self.fc(x), labels)}


def test_run_trains_a_generic_task_in_train_mode(tmp_path: Path):
    data = SeededSamples(
        ShapesTextures(num_images=40, image_size=16, seed=0), pretrain_transform(16, 0.5, 0.0, 0.5), None, seed=0
    )
    task = TinyClassifier().eval()  # e.g. a backbone loaded for fine-tuning comes in eval mode
    before = task.fc.weight.detach().clone()
    train = TrainConfig(epochs=2, batch_size=8, log_every=1, ckpt_every=3, keep_last=1, device="cpu")
    optim = OptimConfig(lr=0.1, min_lr=0.01, warmup_epochs=1)
    job = Job(
        task=task,
        batch_keys=("image", "label"),
        dataset=data,
        optim=optim,
        train=train,
        run_dir=tmp_path,
        meta={"kind": "test"},
    )
    summary = run(job, torch.device("cpu"), Dist())
    assert task.modes == [True] * 10  # 5 steps per epoch, 2 epochs, always in train mode
    assert summary["step"] == 10 and summary["steps_run"] == 10 and summary["skipped_images"] == 0
    assert not torch.equal(task.fc.weight, before)
    rows = read_metrics(tmp_path / "metrics.csv")
    assert [r["step"] for r in rows] == list(range(1, 11))
    assert [r["lr"] for r in rows] == [cosine_lr(s, 10, 5, 0.1, 0.01) for s in range(10)]
    ck = Path(summary["checkpoint"])
    assert ck.name == "step_00000010" and sorted(p.name for p in ck.iterdir()) == [
        "checksums.json",
        "meta.json",
        "model.safetensors",
        "optimizer.safetensors",
    ]  # no backbone asked for
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["latest", "step_00000010"]
