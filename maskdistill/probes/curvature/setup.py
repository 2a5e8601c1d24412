"""What the curvature probes (paper Sec. 4, Fig. 7) share on one probe context: the fixed labelled
batches, the loss, the metadata, and the top Hessian eigenpairs.

The top eigenpairs are computed once per (batches, loss, parameters, solver settings) and kept in
the context's ``memo``: ``hessian_top_eigs`` reports them, ``hessian_trace`` deflates Hutchinson's
estimator by their Lanczos Krylov space, and ``loss_landscape_2d`` walks along their eigenvectors,
so the three cost one Lanczos run instead of three. A context without a ``memo`` dict recomputes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Optional, Tuple

import torch
from torch import nn

from maskdistill.parallel.group import SINGLE
from maskdistill.parallel.shards import RankBatches
from maskdistill.probes.curvature.hessian import top_eigenvalues
from maskdistill.probes.curvature.operands import ParamFilter
from maskdistill.probes.curvature.results import EigenResult

Batch = Tuple[torch.Tensor, torch.Tensor]
# Images per Hessian batch unless asked: a product costs about six forward passes of the batch, so
# 32 images keep the probes in CPU seconds on small models (the metadata record the number).
HESSIAN_BATCH = 32


@dataclass
class Setup:
    """What every curvature probe measures on: the classifier, its loss, the fixed batches, the seed,
    the metadata they share, and the memo key of the batches and loss."""

    model: nn.Module
    loss_fn: nn.Module
    batches: RankBatches  # this rank's share (all of them in one process)
    seed: int
    meta: Dict[str, Any]
    key: Tuple[Any, ...]
    memo: Optional[Dict[str, Any]]

    @property
    def n_batches(self) -> int:
        """The measurement's batches over all ranks."""
        return self.batches.count

    def batch(self, b: int) -> RankBatches:
        """Measurement batch ``b`` alone (this rank's parts of it)."""
        return self.batches.only(b)


def setup(
    ctx: Any,
    n_batches: int,
    batch_size: Optional[int],
    label_smoothing: Optional[float],
    seed: Optional[int],
    params: ParamFilter,
) -> Setup:
    batch_size = int(batch_size or min(int(getattr(ctx, "batch_size", HESSIAN_BATCH)), HESSIAN_BATCH))
    if not hasattr(ctx, "labelled_batches"):
        raise TypeError(
            "the Hessian probes need labelled images: the probe context has no labelled_batches(); "
            "point the analysis at a data folder with class sub-folders."
        )
    device = torch.device(getattr(ctx, "device", "cpu"))
    images = getattr(ctx, "hessian_images", None)  # --hessian-images: the probes' images, in batches
    given = (
        ctx.labelled_batches(n_batches, batch_size, images=images)
        if images
        else ctx.labelled_batches(n_batches, batch_size)  # duck-typed contexts need not take images=
    )
    if not isinstance(given, RankBatches):  # a plain list: one process
        given = RankBatches(list(given), SINGLE, range(len(given)), len(given))
    batches = given.moved(lambda b: (b[0].to(device), b[1].to(device)))
    if not batches.count:
        raise ValueError("the probe context returned no labelled batches; the data folder has no labelled images.")
    ls = float(getattr(ctx, "label_smoothing", 0.0) if label_smoothing is None else label_smoothing)
    seed = int(getattr(ctx, "seed", 0) if seed is None else seed)
    mine = {
        "loss": "cross-entropy",
        "label_smoothing": ls,
        "mode": "eval, eager attention, float32",
        "images": _images(batches),
        "n_batches": batches.count,
        "processes": batches.world.world,
        "hessian_batch_size": batch_size,
        "seed": seed,
        "params": repr(params),
    }
    meta = ctx.meta(**mine) if callable(getattr(ctx, "meta", None)) else mine
    memo = getattr(ctx, "memo", None)
    key = (batches.count, batch_size, images, ls, seed, repr(params))
    return Setup(ctx.model, nn.CrossEntropyLoss(label_smoothing=ls), batches, seed, meta, key, memo)


def shared_top(
    s: Setup,
    k: int,
    method: str,
    tol: float,
    max_iter: Optional[int],
    params: ParamFilter,
    batch: Optional[int] = None,
) -> EigenResult:
    """The top-k eigenpairs on all batches (``batch=None``) or on batch ``batch`` alone, memoised."""
    key = f"curvature.top:{(s.key, k, method, tol, max_iter, batch)!r}"
    if s.memo is not None and key in s.memo:
        return s.memo[key]
    batches = s.batches if batch is None else s.batch(batch)
    res = top_eigenvalues(
        s.model, s.loss_fn, batches, k=k, method=method, tol=tol, max_iter=max_iter, params=params, seed=s.seed
    )
    if s.memo is not None:
        s.memo[key] = res
    return res


def _images(batches: RankBatches) -> int:
    """The measurement's images over all ranks."""
    from maskdistill.parallel.collectives import sum_floats

    return int(sum_floats([float(sum(int(x.shape[0]) for x, _ in batches))], batches.world)[0])


def name_of(ctx: Any) -> str:
    return str(getattr(ctx, "name", None) or "model")


__all__ = ["HESSIAN_BATCH", "Setup", "name_of", "setup", "shared_top"]
