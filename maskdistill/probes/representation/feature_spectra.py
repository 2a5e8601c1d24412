"""Fourier and singular-value spectra of the residual stream's patch tokens (paper Secs. 3-4): the
relative log amplitude of the Fourier-transformed features (Fig. 3b) and the relative log singular
value spectra at token level (Figs. 4, 6b) and image level (Figs. 5, 6c).

Inputs are patch tokens (B, N, C) with the prefix tokens dropped, N = rows * cols in row-major order.
Streaming (memory independent of the number of images): :func:`fourier_log_amplitude_diagonal` and
``token_singular_spectrum(..., per_image=True)`` return one curve per image, (B, K), for a caller to
sum batch by batch; the image-level spectrum needs the covariance of pooled features over *all*
images, which :class:`SpectrumAccumulator` merges batch by batch in float64 (Chan et al.'s pairwise
update of the centred scatter matrix, which stays accurate when the mean is large against the spread
-- unlike accumulating raw sums of outer products). The Fourier transform runs in float32 (float64
input stays float64), the spectra always in float64.
"""

from __future__ import annotations

import math
from typing import Optional, Tuple

import torch

from maskdistill.parallel.collectives import sum_across, sum_floats
from maskdistill.parallel.group import Dist
from maskdistill.probes.representation.inputs import Grid, as_grid, stat_float

SPECTRUM_OF = ("covariance", "features")


def _check_tokens(tokens: torch.Tensor, grid: Tuple[int, int], name: str) -> None:
    if tokens.ndim != 3 or tokens.shape[1] != grid[0] * grid[1]:
        raise ValueError(
            f"{name} expects patch tokens (B, N, C) with N = {grid[0]}*{grid[1]} = "
            f"{grid[0] * grid[1]} (prefix tokens dropped), got {tuple(tokens.shape)}; "
            f"drop the prefix (tokens[:, num_prefix:]) or pass the right grid."
        )


def fourier_log_amplitude_diagonal(tokens: torch.Tensor, grid: Grid) -> torch.Tensor:
    """Per-image log amplitude along the diagonal of the centred 2-D spectrum (Fig. 3b), before
    subtracting k = 0: tokens (B, N, C), prefix dropped -> (B, K), K = ceil(L/2).

    log(|FFT2| + 1e-6) of the unnormalised FFT of each channel's L x L map, zero frequency shifted
    to the centre, averaged over channels (mean of logs); entry k is frequency (k, k). Averaging
    these curves over images (streamed as a sum) and subtracting entry 0 gives
    :func:`fourier_relative_log_amplitude`. A non-square grid keeps K = min(ceil(rows/2), ceil(cols/2))."""
    g = as_grid(grid)
    _check_tokens(tokens, g, "fourier_log_amplitude_diagonal")
    B, N, C = tokens.shape
    x = stat_float(tokens).transpose(1, 2).reshape(B, C, g[0], g[1])  # (B, C, rows, cols), row-major tokens
    amp = torch.log(torch.fft.fft2(x).abs() + 1e-6)  # (B, C, rows, cols)
    amp = torch.fft.fftshift(amp, dim=(-2, -1)).mean(1)  # (B, rows, cols), zero frequency at (L//2, L//2)
    K = min(math.ceil(g[0] / 2), math.ceil(g[1] / 2))
    k = torch.arange(K, device=amp.device)
    return amp[:, g[0] // 2 + k, g[1] // 2 + k]  # (B, K)


def fourier_relative_log_amplitude(tokens: torch.Tensor, grid: Grid) -> torch.Tensor:
    """Relative log amplitude curve (Fig. 3b): tokens (B, N, C), prefix dropped -> (K,), entry k =
    mean log amplitude at frequency (k, k) minus that at (0, 0). The per-layer scalar is the last
    entry (k = L/2 - 1 for even L, not Nyquist)."""
    curve = fourier_log_amplitude_diagonal(tokens, grid).mean(0)  # (K,)
    return curve - curve[0]


def _check_of(of: str) -> None:
    if of not in SPECTRUM_OF:
        raise ValueError(f"of={of!r}: use 'covariance' (Park et al.'s convention) or 'features'.")


def relative_log(sv: torch.Tensor, of: str, keep: int) -> torch.Tensor:
    """Singular values of the centred features (..., >= keep), descending -> relative log values
    (..., keep) of the features or of their covariance (sigma^2 / (n - 1): exactly twice the
    relative log values). Values are floored at the smallest positive float64 so that exactly
    rank-deficient data gives large negative numbers rather than -inf (a constant input gives 0)."""
    logs = torch.log(sv[..., :keep].clamp_min(torch.finfo(torch.float64).tiny))
    rel = logs - logs[..., :1]
    return 2 * rel if of == "covariance" else rel


def singular_spectrum(x: torch.Tensor, of: str = "covariance") -> torch.Tensor:
    """Relative log singular values log s_i - log s_1 (Figs. 4-6) of x (n, C) centred over rows
    (``of="features"``) or of its covariance (``of="covariance"``, the default, Park et al.); float64,
    the first min(n - 1, C) values only (rank limit; the rest is numerical noise). -> (K,).

    The covariance spectrum is taken from the SVD of the centred features (eigenvalues of the
    covariance = s^2 / (n - 1)): mathematically the same as an SVD of the covariance, without
    squaring the condition number."""
    _check_of(of)
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"singular_spectrum expects a matrix (n, C) with n >= 2 rows, got {tuple(x.shape)}.")
    x = x.to(torch.float64)
    sv = torch.linalg.svdvals(x - x.mean(0, keepdim=True))  # (min(n, C),), descending
    return relative_log(sv, of, min(x.shape[0] - 1, x.shape[1]))


def token_singular_spectrum(tokens: torch.Tensor, of: str = "covariance", per_image: bool = False) -> torch.Tensor:
    """Token-level spectrum (Figs. 4, 6b): for each image the N patch tokens (N, C), centred over
    tokens; tokens (B, N, C), prefix dropped -> (K,) averaged over images, or (B, K) with
    ``per_image=True`` (for streaming sums). K = min(N - 1, C)."""
    _check_of(of)
    if tokens.ndim != 3 or tokens.shape[1] < 2:
        raise ValueError(
            f"token_singular_spectrum expects patch tokens (B, N, C) with N >= 2, got {tuple(tokens.shape)}."
        )
    x = tokens.to(torch.float64)
    sv = torch.linalg.svdvals(x - x.mean(1, keepdim=True))  # (B, min(N, C))
    rel = relative_log(sv, of, min(x.shape[1] - 1, x.shape[2]))  # (B, K)
    return rel if per_image else rel.mean(0)


def global_average_pool(tokens: torch.Tensor) -> torch.Tensor:
    """(B, N, C) patch tokens -> (B, C) image vectors, pooled in float64."""
    if tokens.ndim != 3:
        raise ValueError(f"expected patch tokens (B, N, C), got {tuple(tokens.shape)}.")
    return tokens.to(torch.float64).mean(1)


def image_singular_spectrum(tokens: torch.Tensor, of: str = "covariance") -> torch.Tensor:
    """Image-level spectrum (Figs. 5, 6c) of one batch: the global-average-pooled patch tokens of B
    images (B, C), centred over images; tokens (B, N, C), prefix dropped -> (min(B - 1, C),). Over
    many batches use :class:`SpectrumAccumulator` on :func:`global_average_pool` outputs."""
    return singular_spectrum(global_average_pool(tokens), of)


class SpectrumAccumulator:
    """Streams the image-level spectrum: ``update(x)`` with rows x (b, C) (e.g. pooled tokens) merges
    count, mean and centred scatter matrix M2 = sum (x - mean)(x - mean)^T in float64 (Chan et al.'s
    pairwise update; memory C x C whatever the number of images); ``spectrum(of)`` returns what
    :func:`singular_spectrum` returns on all rows stacked: the centred features' squared singular
    values are the eigenvalues of M2."""

    def __init__(self) -> None:
        self.n = 0
        self.mean: Optional[torch.Tensor] = None  # (C,)
        self.m2: Optional[torch.Tensor] = None  # (C, C)

    def update(self, x: torch.Tensor) -> None:
        if x.ndim != 2:
            raise ValueError(f"SpectrumAccumulator.update expects rows (b, C), got {tuple(x.shape)}.")
        if x.shape[0] == 0:
            return
        x = x.detach().to(torch.float64)
        nb = x.shape[0]
        mb = x.mean(0)
        xc = x - mb
        m2b = xc.T @ xc
        if self.mean is None:
            self.n, self.mean, self.m2 = nb, mb, m2b
            return
        if x.shape[1] != self.mean.shape[0]:
            raise ValueError(f"rows of width {x.shape[1]} cannot join rows of width {self.mean.shape[0]}.")
        n = self.n + nb
        delta = mb.to(self.mean.device) - self.mean
        self.m2 = self.m2 + m2b.to(self.m2.device) + torch.outer(delta, delta) * (self.n * nb / n)
        self.mean = self.mean + delta * (nb / n)
        self.n = n

    def reduce(self, world: Dist) -> None:
        """Merge every rank's rows (torchrun; each rank has rows): with the global mean m,
        M2 = sum_r [M2_r + n_r (m_r - m)(m_r - m)^T], which keeps the float64 sums centred."""
        if not world.enabled:
            return
        if self.mean is None or self.m2 is None:
            raise ValueError("a rank saw no image; run with fewer processes than images.")
        n = sum_floats([float(self.n)], world)[0]
        total_mean = sum_across(self.mean * self.n, world) / n
        delta = self.mean - total_mean
        self.m2 = sum_across(self.m2 + torch.outer(delta, delta) * self.n, world)
        self.mean, self.n = total_mean, int(n)

    def spectrum(self, of: str = "covariance") -> torch.Tensor:
        _check_of(of)
        if self.m2 is None or self.n < 2:
            raise ValueError(f"the image-level spectrum needs at least 2 images, got {self.n}.")
        ev = torch.linalg.eigvalsh(self.m2).flip(0).clamp_min(0)  # (C,), descending
        return relative_log(ev.sqrt(), of, min(self.n - 1, self.m2.shape[0]))


__all__ = [
    "SPECTRUM_OF",
    "relative_log",
    "SpectrumAccumulator",
    "fourier_log_amplitude_diagonal",
    "fourier_relative_log_amplitude",
    "global_average_pool",
    "image_singular_spectrum",
    "singular_spectrum",
    "token_singular_spectrum",
]
