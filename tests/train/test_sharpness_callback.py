"""The sharpness callback (Fig. 7c/f) in the real loop: rows of ``metrics_sharpness.csv`` at the
right steps, values equal to an independent measurement of the final model on the same fixed batch,
and training bit-for-bit the same as without the callback (own RNG, parameters only read)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from timm.models.vision_transformer import VisionTransformer
from torch import nn

from maskdistill.config import OptimConfig, TrainConfig
from maskdistill.data.pipeline import SeededSamples
from maskdistill.data.synthetic import ShapesTextures
from maskdistill.data.transforms import pretrain_transform
from maskdistill.parallel.group import Dist
from maskdistill.probes.curvature.hessian import hessian_trace, top_eigenvalues
from maskdistill.report.plots.hessian import load_sharpness, plot_sharpness
from maskdistill.runs.metrics import read_metrics
from maskdistill.train.classify import Classifier
from maskdistill.train.job import Job
from maskdistill.train.loop import run
from maskdistill.train.sharpness import SharpnessCallback


def make_job(run_dir: Path, callbacks) -> Job:
    torch.manual_seed(0)
    net = VisionTransformer(
        img_size=16, patch_size=8, embed_dim=8, depth=1, num_heads=2, mlp_ratio=2, num_classes=10, drop_path_rate=0.1
    )  # drop path: training draws from the RNG
    task = Classifier(net, [0.5] * 3, [0.25] * 3, label_smoothing=0.1)
    data = SeededSamples(
        ShapesTextures(num_images=40, image_size=16, seed=0), pretrain_transform(16, 0.5, 0.0, 0.5), None, seed=0
    )

    def fixed():
        items = [data[(i, 0)] for i in range(8)]
        return {
            "image": torch.stack([it["image"] for it in items]),
            "label": torch.tensor([int(it["label"]) for it in items]),
        }

    train = TrainConfig(epochs=1, batch_size=8, log_every=1, ckpt_every=100, keep_last=1, device="cpu")
    return Job(
        task=task,
        batch_keys=("image", "label"),
        dataset=data,
        optim=OptimConfig(lr=1e-3, warmup_epochs=0),
        train=train,
        run_dir=run_dir,
        meta={"kind": "test"},
        callbacks=callbacks,
        fixed_batch=fixed,
    )


@pytest.mark.slow
def test_sharpness_rows_values_and_no_interference(tmp_path: Path, capsys, restore_logging):
    cb = SharpnessCallback(every=2, trace_tol=0.1, trace_max_iter=100)
    job = make_job(tmp_path / "with", [cb])
    run(job, torch.device("cpu"), Dist())
    rows = read_metrics(tmp_path / "with" / "metrics_sharpness.csv")
    assert [r["step"] for r in rows] == [2, 4, 5]  # every 2 steps and the last (5 steps per epoch)
    for r in rows:
        assert r["label_smoothing"] == 0.1 and r["abs_lambda_1"] == abs(r["lambda_1"]) > 0
        assert r["trace_se"] > 0 and r["eig_products"] >= 1 and r["lambda_converged"] == 1.0
    assert len({r["lambda_1"] for r in rows}) == 3  # it tracks a changing model
    table = load_sharpness({"md": tmp_path / "with"})  # Fig. 7c/f from the saved metrics only
    assert list(table["step"]) == [2, 4, 5] and set(table["run"]) == {"md"}
    paths = plot_sharpness(table, tmp_path / "fig" / "sharpness")
    assert [p.suffix for p in paths] == [".png", ".pdf"] and all(p.stat().st_size > 1000 for p in paths)

    # `maskdistill report DIR --sharpness md=RUN`: the log is kept in DIR and drawn in the report, and
    # the report regenerates from DIR alone
    from maskdistill.cli import main
    from maskdistill.report.plots.sharpness import TITLE

    rep = tmp_path / "analysis"
    assert main(["report", str(rep), "--sharpness", f"md={tmp_path / 'with'}"]) == 0
    copied = pd.read_csv(rep / "sharpness" / "md.csv")
    assert list(copied["lambda_1"]) == [r["lambda_1"] for r in rows]
    html = (rep / "report.html").read_text()
    assert TITLE in html and (rep / "figures" / "fig7cf_sharpness.png").stat().st_size > 1000
    (rep / "report.html").unlink()
    assert main(["report", str(rep)]) == 0 and TITLE in (rep / "report.html").read_text()
    assert main(["report", str(rep), "--sharpness", f"plain={tmp_path / 'nope'}"]) == 2
    assert "fine-tune with eval.sharpness_every > 0" in capsys.readouterr().err

    # without the callback, training is bit-for-bit the same
    plain = make_job(tmp_path / "plain", [])
    run(plain, torch.device("cpu"), Dist())
    a, b = job.task.state_dict(), plain.task.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert [r["loss"] for r in read_metrics(tmp_path / "with" / "metrics.csv")] == [
        r["loss"] for r in read_metrics(tmp_path / "plain" / "metrics.csv")
    ]

    # the last row is λ1 and tr(H) of the final model on the fixed batch, measured independently
    task = job.task.eval()
    batch = job.fixed_batch()

    def loss(out, y):
        return F.cross_entropy(out, y, label_smoothing=0.1)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.task = task

        def forward(self, x):
            return self.task.logits(x)

    ref = top_eigenvalues(Net(), loss, [(batch["image"], batch["label"])], k=1, tol=1e-6, seed=123)
    assert abs(rows[-1]["lambda_1"] - ref.eigenvalues[0]) <= 2e-3 * abs(ref.eigenvalues[0])
    exact = hessian_trace(Net(), loss, [(batch["image"], batch["label"])], exact=True)
    assert abs(rows[-1]["trace"] - exact.estimate) <= 4 * rows[-1]["trace_se"]


def test_measure_rejects_a_task_without_logits():
    with pytest.raises(TypeError, match="classification task"):
        SharpnessCallback(every=1).measure(nn.Linear(2, 2), {"image": torch.zeros(1, 2), "label": torch.zeros(1)})
    with pytest.raises(ValueError, match="every="):
        SharpnessCallback(every=-1)
