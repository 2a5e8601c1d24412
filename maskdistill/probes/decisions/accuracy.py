"""``accuracy``: top-1 accuracy of a classifier on the analysed labelled images, the labels mapped
onto its head by name (the check that the head is measured against the classes it was trained on,
before reading its Hessian or landscape, paper Sec. 4), with a bootstrap interval over images.
Under torchrun each rank scores its share of the images and the per-image results are gathered in
the analysis order, so every rank holds the accuracy and interval of one process.
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np
import pandas as pd
import torch

from maskdistill.parallel.collectives import gather_rows
from maskdistill.parallel.group import SINGLE
from maskdistill.probes.core.intervals import attach
from maskdistill.probes.core.registry import ProbeResult, register


@torch.inference_mode()
def _correct(ctx: Any, batch_size: Optional[int]) -> np.ndarray:
    """(n,) booleans: whether the arg-max output is the image's head label, in the analysis order:
    ``ctx.batches`` streams this rank's contiguous share, the ranks' shares are gathered."""
    out = [torch.zeros(0, dtype=torch.bool)]
    for x, y in ctx.batches(batch_size, desc=f"{ctx.name}: accuracy"):
        with ctx.autocast():
            logits = ctx.model(x)
        out.append((logits.float().argmax(dim=1) == y).cpu())
    every = gather_rows(torch.cat(out).numpy(), getattr(ctx, "world", SINGLE))
    return np.zeros(0, dtype=bool) if every is None else every


@register("accuracy", needs=("classifier", "labels"), figure="")
def accuracy_probe(ctx: Any, batch_size: Optional[int] = None) -> ProbeResult:
    """Top-1 accuracy on the analysed images against their labels mapped onto the head by name."""
    correct = _correct(ctx, batch_size)
    table = pd.DataFrame([dict(metric="accuracy", value=float(correct.mean()), n_images=len(correct))])
    arrays: dict = {"correct": correct.astype(np.uint8)}
    extra = {"n_images": len(correct)}
    if ctx.bootstrap is not None:
        attach(table, arrays, "accuracy", ctx.bootstrap.means(correct.astype(np.float64)), ctx.bootstrap)
        extra["bootstrap"] = ctx.bootstrap.describe(len(correct), unit="image")
    return ProbeResult("accuracy", ctx.name, table, ctx.meta(**extra), arrays)


__all__ = ["accuracy_probe"]
