"""Eidolon distortions (Koenderink et al. 2017, "Eidolons: novel stimuli for vision research"), as
used for model-vs-human's eidolon I/II/III sets (Geirhos et al. 2018: ``partially_coherent_disarray``
with reach 1..128, coherence 1.0 / 0.3 / 0.0, grain 10; paper App. C).

What is implemented -- the Eidolon factory's *partially coherent disarray*, re-written on torch:

1. Scale space: Gaussian blurs G_k of the grey image at sigma_k = 1/sqrt(2) * sqrt(2)^k up to a
   quarter of the image side (the factory's MIN_SIGMA, SIGMA_FACTOR and MAX_SIGMA = size/4), computed
   by FFT on the image mirrored into a plane twice its size (the factory's "fat" plane: no wrap-around).
   DOG slices D_k = G_k - G_{k+1}, and the last slice is G_K itself, so the slices sum to G_0.
2. Displacement fields, independently for x and y and for every scale k:
   - *coherent*: per scale a white Gaussian plane (scaled to a peak of 127.5, as the factory does),
     blurred at sigma_j, made zero-mean and multiplied by sigma_j / MAX_SIGMA; scale k is displaced by
     the sum over all j >= k, so coarse receptive fields drag the finer ones along;
   - *incoherent*: an independent plane per scale, blurred at ``grain`` (zero-mean, same peak scaling);
   - field_k = coherence * coherent_k + (1 - coherence) * incoherent_k.
   The factory's Python code reads ``incoherent * coherence + coherent``, which makes coherence 1 the
   *least* coherent setting -- contrary to the parameter's name and to Koenderink et al.'s definition
   (coherence 1 = fully coherent disarray), and to model-vs-human's human data, where accuracy falls
   with decreasing coherence from reach 4 on (reach 8: 0.69 / 0.56 / 0.41 for eidolon I / II / III;
   Geirhos et al. used a patched factory). The mixture above follows the definition.
3. Every slice is resampled at (row + reach * field_y, col + reach * field_x), nearest pixel (truncated,
   clipped at the border, as the factory's ``DataPlaneDisarray``), and the slices are summed; clipped.

Differences from the factory: the factory works on 256-px pictures, here displacements are in pixels of
the given image; the factory's zero-mean step has a typo (``c - m/v``), here fields are plainly centred;
the random numbers differ (torch generator). The output is greyscale, as the original stimuli.
"""

from __future__ import annotations

import math
from typing import List, Optional

import torch

from maskdistill.data.grey import grey_op

MIN_SIGMA = 1.0 / math.sqrt(2.0)
SIGMA_FACTOR = math.sqrt(2.0)
PEAK = 127.5  # the factory scales white noise planes to this peak before blurring


def scale_levels(size: int, min_sigma: float = MIN_SIGMA, factor: float = SIGMA_FACTOR) -> List[float]:
    """sigma_k = min_sigma * factor^k for k >= 0, up to ``size / 4``."""
    out, s = [], min_sigma
    while s <= size / 4.0 + 1e-9:
        out.append(s)
        s *= factor
    return out


def _gauss_transfer(h: int, w: int, sigma: float, device: torch.device) -> torch.Tensor:
    """FFT transfer function of a unit-mass Gaussian of std ``sigma`` px on an (h, w) periodic grid."""
    fy = torch.fft.fftfreq(h, device=device).view(-1, 1)
    fx = torch.fft.fftfreq(w, device=device).view(1, -1)
    return torch.exp(-2.0 * math.pi**2 * sigma**2 * (fx**2 + fy**2))


def _blur(plane_f: torch.Tensor, sigma: float) -> torch.Tensor:
    """Blur a plane given by its FFT (B, h, w) -> real (B, h, w)."""
    h, w = plane_f.shape[-2:]
    return torch.fft.ifft2(plane_f * _gauss_transfer(h, w, sigma, plane_f.device)).real


def _noise_plane(shape, sigma: float, generator: Optional[torch.Generator], device: torch.device) -> torch.Tensor:
    n = torch.randn(shape, generator=generator, dtype=torch.float32).to(device)
    n = PEAK * n / n.abs().amax(dim=(-2, -1), keepdim=True)
    c = _blur(torch.fft.fft2(n), sigma)
    return c - c.mean(dim=(-2, -1), keepdim=True)


def _fields(shape, sigmas: List[float], coherence: float, grain: float, generator, device) -> List[torch.Tensor]:
    """One displacement plane per scale: coherence * sum_{j >= k} scaled_j + (1 - coherence) * incoherent_k."""
    out = [torch.zeros(shape, dtype=torch.float32, device=device) for _ in sigmas]
    if coherence > 0:
        acc = torch.zeros(shape, dtype=torch.float32, device=device)
        for k in reversed(range(len(sigmas))):  # coarse to fine: each scale carries all coarser ones
            acc = acc + _noise_plane(shape, sigmas[k], generator, device) * (sigmas[k] / sigmas[-1])
            out[k] = coherence * acc
    if coherence < 1:
        out = [f + (1.0 - coherence) * _noise_plane(shape, grain, generator, device) for f in out]
    return out


def _disarray(plane: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor, reach: float) -> torch.Tensor:
    """Nearest-pixel resampling plane[row + reach*dy, col + reach*dx] (truncated, clipped): (B, h, w)."""
    b, h, w = plane.shape
    rows = torch.arange(h, device=plane.device, dtype=dy.dtype).view(1, -1, 1)
    cols = torch.arange(w, device=plane.device, dtype=dx.dtype).view(1, 1, -1)
    r = (dy * reach + rows).clamp(0, h - 1).long()
    c = (dx * reach + cols).clamp(0, w - 1).long()
    return plane.flatten(1).gather(1, (r * w + c).flatten(1)).view(b, h, w)


def eidolon(
    x: torch.Tensor, reach: float, coherence: float, grain: float = 10.0, generator: Optional[torch.Generator] = None
) -> torch.Tensor:
    """Partially coherent disarray of ``x`` ((C, H, W) or (B, C, H, W) in [0, 1]); greyscale output."""
    if reach < 0 or not 0.0 <= coherence <= 1.0 or grain <= 0:
        raise ValueError(
            f"eidolon needs reach >= 0, coherence in [0, 1] and grain > 0; got reach={reach}, "
            f"coherence={coherence}, grain={grain}."
        )

    def fn(g: torch.Tensor) -> torch.Tensor:
        b, _, h, w = g.shape
        fat = torch.cat([g, g.flip(-1)], dim=-1)
        fat = torch.cat([fat, fat.flip(-2)], dim=-2)[:, 0].float()  # (B, 2H, 2W) mirrored, periodic
        sigmas = scale_levels(min(h, w))
        fat_f = torch.fft.fft2(fat)
        blurred = [_blur(fat_f, s) for s in sigmas]
        slices = [blurred[k] - blurred[k + 1] for k in range(len(sigmas) - 1)] + [blurred[-1]]
        fy = _fields(fat.shape, sigmas, coherence, grain, generator, g.device)
        fx = _fields(fat.shape, sigmas, coherence, grain, generator, g.device)
        out = sum(_disarray(s, dy, dx, reach) for s, dy, dx in zip(slices, fy, fx))
        return out[:, :h, :w].unsqueeze(1).to(g.dtype).clamp(0.0, 1.0)

    return grey_op(fn)(x)


__all__ = ["eidolon", "scale_levels"]
