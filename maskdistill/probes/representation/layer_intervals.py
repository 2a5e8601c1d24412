"""Intervals of the per-layer and per-head numbers of the attention and representation probes
(paper Secs. 3-4), from the per-image values the shared pass keeps: a seeded bootstrap over the
analysed images (:class:`maskdistill.probes.core.intervals.Bootstrap`), the same resamples for every
model that saw the same images, so a pair's deltas are paired.

Each method adds ``ci_low`` / ``ci_high`` to the rows of one metric and keeps its replicates
(``bootstrap.<metric>``); with no bootstrap (``--bootstrap 0``) or no per-image values it does
nothing, and the table keeps NaN intervals.
"""

from __future__ import annotations

from typing import Any, Dict, Optional

import numpy as np
import pandas as pd
import torch

from maskdistill.probes.core.intervals import Bootstrap, attach


def spectrum_influence(x: np.ndarray, of: str) -> np.ndarray:
    """Each image's influence on the mean relative log singular value of the image-level spectrum
    of its rows x (n, C): with z_i = x_i - mean, eigenpairs (lambda_k, v_k) of the covariance and
    p_ik = (v_k . z_i)^2 / lambda_k, d log lambda_k = v_k^T dSigma v_k / lambda_k gives
    IF_i = mean_{k<K} (p_ik - 1) - (p_i1 - 1) for the covariance's relative logs (K = min(n - 1, C)),
    half of it for the features'. (n,) -- mean zero."""
    z = x - x.mean(0, keepdims=True)
    lam_t, vec_t = torch.linalg.eigh(torch.from_numpy(z.T @ z / len(z)))
    lam, vec = lam_t.numpy()[::-1], vec_t.numpy()[:, ::-1]  # descending
    k = min(len(z) - 1, x.shape[1])
    lam = np.maximum(lam[:k], np.finfo(np.float64).tiny)
    p = (z @ vec[:, :k]) ** 2 / lam  # (n, K)
    influence = (p - 1.0).mean(1) - (p[:, 0] - 1.0)
    return influence if of == "covariance" else 0.5 * influence


class LayerIntervals:
    """Adds intervals to one result's ``table`` and keeps the replicates in its ``arrays``, with the
    bootstrap ``boot`` (None: ``--bootstrap 0``, nothing is added). Each method takes the per-image
    values of one statistic (None: not kept, nothing is added)."""

    def __init__(self, table: pd.DataFrame, arrays: Dict[str, np.ndarray], boot: Optional[Bootstrap]) -> None:
        self.table, self.arrays, self.boot = table, arrays, boot

    def _means(self, values: Optional[np.ndarray], scale: float = 1.0) -> Optional[np.ndarray]:
        if self.boot is None or values is None:
            return None
        return self.boot.means(values.astype(np.float64) * scale)

    def _attach(self, metric: str, reps: np.ndarray) -> None:
        attach(self.table, self.arrays, metric, reps.reshape(reps.shape[0], -1), self.boot)

    def per_layer(self, metric: str, values: Optional[np.ndarray], scale: float = 1.0) -> None:
        """``values`` (images, layers): the per-layer rows of ``metric`` (one per layer, in order)."""
        reps = self._means(values, scale)
        if reps is not None:
            self._attach(metric, reps)

    def per_head(self, metric: str, values: Optional[np.ndarray], scale: float = 1.0) -> None:
        """``values`` (images, depth, H): the rows of ``metric`` (per layer and head, layer-major) and
        of ``<metric>_layer_mean`` (the mean over heads)."""
        reps = self._means(values, scale)  # (B, depth, H)
        if reps is not None:
            self._attach(metric, reps)
            self._attach(f"{metric}_layer_mean", reps.mean(-1))

    def head_spread(self, metric: str, values: Optional[np.ndarray]) -> None:
        """The rows of ``metric`` (per layer: the standard deviation over heads of the per-head means,
        Fig. 10's spread of entropy over heads) from ``values`` (images, depth, H)."""
        reps = self._means(values)
        if reps is not None:
            self._attach(metric, reps.std(-1))

    def image_spectrum(self, metric: str, pooled: Optional[np.ndarray], of: str) -> None:
        """The per-layer rows of ``metric`` (mean of the kept relative log singular values of the
        image-level spectrum, Figs. 5/6c) from the pooled tokens (images, layers, C). The spectrum is
        a statistic of all images together; its bootstrap is taken to first order (the linearised
        bootstrap: each replicate moves the value by the mean over its resample of the images'
        influences, :func:`spectrum_influence`), which costs one eigendecomposition per layer
        instead of one per replicate and layer."""
        if self.boot is None or pooled is None:
            return
        rows = self.table[self.table.metric == metric]  # in table order, as attach() expects
        x = pooled.astype(np.float64)
        per_layer = [v + spectrum_influence(x[:, int(l)], of) for l, v in zip(rows["layer"], rows["value"])]
        self.per_layer(metric, np.stack(per_layer, axis=1))  # per image: the value plus its influence


def describe(boot: Optional[Bootstrap], n_images: int) -> Dict[str, Any]:
    """What a result's metadata says of its intervals."""
    if boot is None:
        return {"intervals": "none (--bootstrap 0)"}
    return {
        "bootstrap": boot.describe(n_images, unit="image"),
        "intervals": f"{boot.level:.0%} percentile bootstrap over images ({boot.replicates} replicates)",
        "interval_method": "resampled per-image values; the image-level spectrum to first order (linearised)",
    }


__all__ = ["LayerIntervals", "describe", "spectrum_influence"]
