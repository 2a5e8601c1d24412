"""Intervals of the per-layer and per-head numbers of the attention and representation probes
(paper Secs. 3-4), from the per-image values the shared pass keeps: a seeded bootstrap over the
analysed images (:class:`maskdistill.probes.core.intervals.Bootstrap`), the same resamples for every
model that saw the same images, so a pair's deltas are paired.

Each function adds ``ci_low`` / ``ci_high`` to the rows of one metric and keeps its replicates
(``bootstrap.<metric>``); with no bootstrap (``--bootstrap 0``) or no per-image values it does
nothing, and the table keeps NaN intervals.
"""

from __future__ import annotations

from typing import Any, Dict, Optional

import numpy as np
import pandas as pd
import torch

from maskdistill.probes.core.intervals import Bootstrap, attach
from maskdistill.probes.representation.feature_spectra import relative_log


def per_head_intervals(
    table: pd.DataFrame,
    arrays: Dict[str, np.ndarray],
    metric: str,
    values: Optional[np.ndarray],
    boot: Optional[Bootstrap],
    scale: float = 1.0,
) -> None:
    """``values`` (images, depth, H): the rows of ``metric`` (per layer and head, layer-major) and of
    ``<metric>_layer_mean`` (the mean over heads)."""
    if boot is None or values is None:
        return
    v = values.astype(np.float64) * scale
    reps = boot.means(v)  # (B, depth, H)
    attach(table, arrays, metric, reps.reshape(boot.replicates, -1), boot)
    attach(table, arrays, f"{metric}_layer_mean", reps.mean(-1), boot)


def head_spread_intervals(
    table: pd.DataFrame,
    arrays: Dict[str, np.ndarray],
    metric: str,
    values: Optional[np.ndarray],
    boot: Optional[Bootstrap],
) -> None:
    """The rows of ``metric`` (per layer: the standard deviation over heads of the per-head means,
    Fig. 10's spread of entropy over heads) from ``values`` (images, depth, H)."""
    if boot is None or values is None:
        return
    attach(table, arrays, metric, boot.means(values.astype(np.float64)).std(-1), boot)


def layer_intervals(
    table: pd.DataFrame,
    arrays: Dict[str, np.ndarray],
    metric: str,
    values: Optional[np.ndarray],
    boot: Optional[Bootstrap],
    scale: float = 1.0,
) -> None:
    """``values`` (images, layers): the per-layer rows of ``metric`` (one per layer, in order)."""
    if boot is None or values is None:
        return
    attach(table, arrays, metric, boot.means(values.astype(np.float64) * scale), boot)


def _weighted_spectra(x: torch.Tensor, counts: torch.Tensor, of: str) -> torch.Tensor:
    """Relative log singular values (r, K) of the centred rows x (n, C) counted ``counts`` (r, n)
    times: the eigenvalues of sum_i c_i (x_i - m)(x_i - m)^T, m the weighted mean."""
    n = x.shape[0]
    mean = counts @ x / n  # (r, C)
    second = torch.einsum("rn,nc,nd->rcd", counts, x, x)  # (r, C, C)
    scatter = second - n * mean[:, :, None] * mean[:, None, :]
    ev = torch.linalg.eigvalsh(scatter).flip(-1).clamp_min(0)  # (r, C) descending
    return relative_log(ev.sqrt(), of, min(n - 1, x.shape[1]))


def image_spectrum_intervals(
    table: pd.DataFrame,
    arrays: Dict[str, np.ndarray],
    metric: str,
    pooled: Optional[np.ndarray],
    boot: Optional[Bootstrap],
    of: str,
) -> Optional[str]:
    """The per-layer rows of ``metric`` (mean of the kept relative log singular values of the
    image-level spectrum, Figs. 5/6c) from the pooled tokens (images, layers, C): a statistic of all
    images together, so each replicate recomputes the spectrum of its resample. Returns why no
    interval was computed (None when it was): a resample holds about 63 % distinct images, so with
    fewer than 2 C images its spectrum is rank-limited and the interval would be meaningless."""
    if boot is None or pooled is None:
        return None
    n, layers, c = pooled.shape
    if n < 2 * c:
        return f"no interval: {n} images < 2 x {c} channels (a resample's spectrum is rank-limited); use more images"
    x = torch.from_numpy(pooled.astype(np.float64))
    reps = np.zeros((boot.replicates, layers))
    start = 0
    for chunk in boot.count_chunks(n, chunk=64):
        w = torch.from_numpy(chunk.astype(np.float64))
        for l in range(layers):
            reps[start : start + len(chunk), l] = _weighted_spectra(x[:, l], w, of).mean(-1).numpy()
        start += len(chunk)
    attach(table, arrays, metric, reps, boot)
    return None


def describe(boot: Optional[Bootstrap], n_images: int) -> Dict[str, Any]:
    """What a result's metadata says of its intervals."""
    if boot is None:
        return {"intervals": "none (--bootstrap 0)"}
    return {
        "bootstrap": boot.describe(n_images, unit="image"),
        "intervals": f"{boot.level:.0%} percentile bootstrap over images ({boot.replicates} replicates)",
    }


__all__ = ["describe", "head_spread_intervals", "image_spectrum_intervals", "layer_intervals", "per_head_intervals"]
