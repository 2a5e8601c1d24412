"""The residual-stream statistics groups of the shared streaming pass (paper Secs. 3-4: Figs. 3b, 4,
5, 6b, 6c), on the patch tokens of every token layer (prefix tokens dropped; layer 0 the patch
embedding + position embedding, layer i the output of block i, before the final norm):

- ``"fourier"``: per layer the float64 sum over images of each image's log amplitude along the
  diagonal of the centred 2-D Fourier spectrum of its token maps (mean of logs over channels), and
  per image its per-layer scalar (highest kept frequency minus k = 0);
- ``"token_spectrum"``: per layer the float64 sum over images of each image's relative log singular
  values of its N patch tokens centred over tokens (of the features; the covariance's are twice),
  and per image their mean;
- ``"image_spectrum"``: per layer a :class:`SpectrumAccumulator` of the global-average-pooled patch
  tokens of all images (float64 count, mean and centred scatter matrix, merged batch by batch), and
  the pooled tokens themselves (images, layers, C) for the bootstrap of the spectrum.

The per-image values (:class:`~maskdistill.probes.core.per_image.PerImageValues`) are what the
intervals over images resample; every per-layer scalar is the mean over images of its value.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, List, Optional, Tuple

import numpy as np
import torch

from maskdistill.probes.core.per_image import PerImageValues
from maskdistill.probes.core.shared_pass import Accumulator, Layout, register_group
from maskdistill.probes.core.state import LayerSums
from maskdistill.probes.representation.feature_spectra import (
    SpectrumAccumulator,
    fourier_log_amplitude_diagonal,
    global_average_pool,
    token_singular_spectrum,
)

FOURIER = "fourier"
TOKEN_SPECTRUM = "token_spectrum"
IMAGE_SPECTRUM = "image_spectrum"
Curve = Callable[[torch.Tensor, Tuple[int, int]], torch.Tensor]  # patch tokens (B, N, C), grid -> (B, K)
Summary = Callable[[torch.Tensor], torch.Tensor]  # curves (B, K) -> the per-layer scalar of each image (B,)


@dataclass
class CurveStats:
    """Per token layer the float64 sums over images of the curves (depth + 1, K), and the per-image
    scalars (images, depth + 1) float32."""

    sums: Optional[torch.Tensor]
    per_image: Optional[np.ndarray]


class CurveSums(Accumulator):
    """Per token layer, the float64 sum over images of one curve per image of its patch tokens, and
    each image's scalar of its curve."""

    def __init__(self, curve: Curve, summary: Summary) -> None:
        self.curve, self.summary = curve, summary
        self.sums = LayerSums()
        self.values = PerImageValues()

    def tokens(self, layer: int, x: torch.Tensor, layout: Layout) -> None:  # x (B, T, C)
        patches = x[:, layout.num_prefix :]  # (B, N, C)
        curves = self.curve(patches, layout.grid)  # (B, K)
        self.sums.add(layer, curves.sum(0), layout.depth + 1)
        self.values.add(layer, self.summary(curves), layout.depth + 1)

    def finish(self, n_images: int) -> CurveStats:
        return CurveStats(self.sums.result(), self.values.result())


def _high_minus_zero(curves: torch.Tensor) -> torch.Tensor:
    return curves[:, -1] - curves[:, 0]


def _mean_over_index(curves: torch.Tensor) -> torch.Tensor:
    return curves.mean(1)


def _token_spectrum(patches: torch.Tensor, grid: Tuple[int, int]) -> torch.Tensor:
    return token_singular_spectrum(patches, of="features", per_image=True)


@register_group(FOURIER, reads=("tokens",))
def fourier_sums(request: Any = None) -> CurveSums:
    return CurveSums(fourier_log_amplitude_diagonal, _high_minus_zero)


@register_group(TOKEN_SPECTRUM, reads=("tokens",))
def token_spectrum_sums(request: Any = None) -> CurveSums:
    return CurveSums(_token_spectrum, _mean_over_index)


@dataclass
class ImageSpectrumStats:
    """Per token layer the merged scatter of the pooled tokens, and the pooled tokens (images, layers, C)."""

    layers: List[SpectrumAccumulator]
    pooled: Optional[np.ndarray]


@register_group(IMAGE_SPECTRUM, reads=("tokens",))
class ImageSpectra(Accumulator):
    """One :class:`SpectrumAccumulator` per token layer, fed the pooled patch tokens of every batch,
    and those pooled tokens per image."""

    def __init__(self, request: Any = None) -> None:
        self.layers: List[SpectrumAccumulator] = []
        self.pooled = PerImageValues()

    def tokens(self, layer: int, x: torch.Tensor, layout: Layout) -> None:  # x (B, T, C)
        if not self.layers:
            self.layers = [SpectrumAccumulator() for _ in range(layout.depth + 1)]
        pooled = global_average_pool(x[:, layout.num_prefix :])
        self.layers[layer].update(pooled)
        self.pooled.add(layer, pooled, layout.depth + 1)

    def finish(self, n_images: int) -> ImageSpectrumStats:
        if n_images < 2:
            raise ValueError(f"the image-level spectrum needs at least 2 images; the data gave {n_images}.")
        return ImageSpectrumStats(self.layers, self.pooled.result())


__all__ = [
    "FOURIER",
    "IMAGE_SPECTRUM",
    "TOKEN_SPECTRUM",
    "CurveStats",
    "CurveSums",
    "ImageSpectrumStats",
    "ImageSpectra",
    "fourier_sums",
    "token_spectrum_sums",
]
