"""The residual-stream statistics groups of the shared streaming pass (paper Secs. 3-4: Figs. 3b, 4,
5, 6b, 6c), on the patch tokens of every token layer (prefix tokens dropped; layer 0 the patch
embedding + position embedding, layer i the output of block i, before the final norm):

- ``"fourier"``: per layer the float64 sum over images of each image's log amplitude along the
  diagonal of the centred 2-D Fourier spectrum of its token maps (mean of logs over channels);
- ``"token_spectrum"``: per layer the float64 sum over images of each image's relative log singular
  values of its N patch tokens centred over tokens (of the features; the covariance's are twice);
- ``"image_spectrum"``: per layer a :class:`SpectrumAccumulator` of the global-average-pooled patch
  tokens of all images (float64 count, mean and centred scatter matrix, merged batch by batch).
"""

from __future__ import annotations

from typing import Any, Callable, List, Optional, Tuple

import torch

from maskdistill.probes.core.shared_pass import Accumulator, LayerSums, Layout, register_group
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


class CurveSums(Accumulator):
    """Per token layer, the float64 sum over images of one curve per image of its patch tokens."""

    def __init__(self, curve: Curve) -> None:
        self.curve = curve
        self.sums = LayerSums()

    def tokens(self, layer: int, x: torch.Tensor, layout: Layout) -> None:  # x (B, T, C)
        patches = x[:, layout.num_prefix :]  # (B, N, C)
        self.sums.add(layer, self.curve(patches, layout.grid).sum(0), layout.depth + 1)

    def finish(self, n_images: int) -> Optional[torch.Tensor]:
        return self.sums.result()  # (depth + 1, K)


def _token_spectrum(patches: torch.Tensor, grid: Tuple[int, int]) -> torch.Tensor:
    return token_singular_spectrum(patches, of="features", per_image=True)


@register_group(FOURIER, reads=("tokens",))
def fourier_sums(request: Any = None) -> CurveSums:
    return CurveSums(fourier_log_amplitude_diagonal)


@register_group(TOKEN_SPECTRUM, reads=("tokens",))
def token_spectrum_sums(request: Any = None) -> CurveSums:
    return CurveSums(_token_spectrum)


@register_group(IMAGE_SPECTRUM, reads=("tokens",))
class ImageSpectra(Accumulator):
    """One :class:`SpectrumAccumulator` per token layer, fed the pooled patch tokens of every batch."""

    def __init__(self, request: Any = None) -> None:
        self.layers: List[SpectrumAccumulator] = []

    def tokens(self, layer: int, x: torch.Tensor, layout: Layout) -> None:  # x (B, T, C)
        if not self.layers:
            self.layers = [SpectrumAccumulator() for _ in range(layout.depth + 1)]
        self.layers[layer].update(global_average_pool(x[:, layout.num_prefix :]))

    def finish(self, n_images: int) -> List[SpectrumAccumulator]:
        if n_images < 2:
            raise ValueError(f"the image-level spectrum needs at least 2 images; the data gave {n_images}.")
        return self.layers


__all__ = [
    "FOURIER",
    "IMAGE_SPECTRUM",
    "TOKEN_SPECTRUM",
    "CurveSums",
    "ImageSpectra",
    "fourier_sums",
    "token_spectrum_sums",
]
