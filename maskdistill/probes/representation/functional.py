"""Pure tensor functions behind the attention and representation probes (paper Secs. 3-4).

Conventions are those of ``docs/PROBES.md``, sections "Attention" and "Feature spectra":

- attention maps (Fig. 2): :func:`attention_map`;
- average attention distance (Fig. 3a), attention entropy (Fig. 10), normalised mutual information
  between queries and keys (Fig. 6a): :func:`attention_distance`, :func:`attention_entropy`,
  :func:`attention_nmi`, on post-softmax attention whose prefix tokens were removed by
  :func:`drop_prefix` (rows renormalised, as Park et al. 2022 do);
- relative log amplitude of the Fourier-transformed features (Fig. 3b):
  :func:`fourier_relative_log_amplitude`;
- relative log singular value spectra, token level (Figs. 4, 6b) and image level (Figs. 5, 6c):
  :func:`singular_spectrum`, :func:`token_singular_spectrum`, :func:`image_singular_spectrum`.

Streaming (memory independent of the number of images): every attention statistic returns one value
per image and head, (B, H), so a caller sums them batch by batch; :func:`fourier_log_amplitude_diagonal`
and ``token_singular_spectrum(..., per_image=True)`` return one curve per image, (B, K), to be summed
likewise; the image-level spectrum needs the covariance of pooled features over *all* images, which
:class:`SpectrumAccumulator` merges batch by batch in float64 (Chan et al.'s pairwise update of the
centred scatter matrix, which stays accurate when the mean is large against the spread -- unlike
accumulating raw sums of outer products).

Statistics run in float32 (float64 input stays float64; the spectra always use float64), whatever
dtype the model ran in.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence, Tuple, Union

import torch

Grid = Union[int, Sequence[int]]
SPECTRUM_OF = ("covariance", "features")


def _float(x: torch.Tensor) -> torch.Tensor:
    """float32 for bf16/fp16/fp32 input, float64 kept: statistics never run in half precision."""
    return x if x.dtype in (torch.float32, torch.float64) else x.float()


def _grid(grid: Grid) -> Tuple[int, int]:
    g = (int(grid), int(grid)) if isinstance(grid, int) else tuple(int(v) for v in grid)
    if len(g) != 2 or min(g) < 1:
        raise ValueError(f"grid must be an int L or a pair (rows, cols) of positive ints, got {grid!r}.")
    return g  # type: ignore[return-value]


def _check_attn(attn: torch.Tensor, name: str) -> None:
    if attn.ndim < 2 or attn.shape[-1] != attn.shape[-2]:
        raise ValueError(f"{name} expects attention of shape (..., N, N) (e.g. (B, H, N, N)), got {tuple(attn.shape)}.")


def _check_tokens(tokens: torch.Tensor, grid: Tuple[int, int], name: str) -> None:
    if tokens.ndim != 3 or tokens.shape[1] != grid[0] * grid[1]:
        raise ValueError(
            f"{name} expects patch tokens (B, N, C) with N = {grid[0]}*{grid[1]} = "
            f"{grid[0] * grid[1]} (prefix tokens dropped), got {tuple(tokens.shape)}; "
            f"drop the prefix (tokens[:, num_prefix:]) or pass the right grid."
        )


# --------------------------------------------------------------------------------------------- attention
def drop_prefix(attn: torch.Tensor, num_prefix: int) -> torch.Tensor:
    """(B, H, N+p, N+p) -> (B, H, N, N): drop the prefix (CLS, register) rows and columns and
    renormalise every row to sum to 1 (dropping without renormalising biases distances down).

    A row whose whole mass was on prefix keys (all remaining entries exactly 0) stays all-zero: it
    has no distribution over patches; it then contributes 0 to distance and entropy."""
    _check_attn(attn, "drop_prefix")
    p = int(num_prefix)
    if not 0 <= p < attn.shape[-1]:
        raise ValueError(
            f"num_prefix={num_prefix} must lie in [0, {attn.shape[-1]}) for attention over {attn.shape[-1]} tokens."
        )
    a = _float(attn[..., p:, p:])  # (B, H, N, N)
    s = a.sum(-1, keepdim=True)
    return torch.where(s > 0, a / torch.where(s > 0, s, torch.ones_like(s)), torch.zeros_like(a))


def patch_distances(
    grid: Grid, patch_size: int, device: Optional[torch.device] = None, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """(N, N) Euclidean distances in input pixels between patch centres, row-major token order."""
    rows, cols = _grid(grid)
    r = torch.arange(rows, device=device, dtype=torch.float64).repeat_interleave(cols)  # (N,)
    c = torch.arange(cols, device=device, dtype=torch.float64).repeat(rows)  # (N,)
    d = torch.sqrt((r[:, None] - r[None]) ** 2 + (c[:, None] - c[None]) ** 2) * float(patch_size)
    return d.to(dtype)


def attention_distance(attn: torch.Tensor, grid: Grid, patch_size: int) -> torch.Tensor:
    """Average attention distance (Fig. 3a) in pixels: mean over queries of sum_k A[q,k] D[q,k].
    attn (..., N, N) (e.g. (B, H, N, N), prefix dropped) -> (...) (e.g. (B, H))."""
    _check_attn(attn, "attention_distance")
    g = _grid(grid)
    if attn.shape[-1] != g[0] * g[1]:
        raise ValueError(
            f"attention over {attn.shape[-1]} tokens does not match the {g[0]}x{g[1]} grid; "
            f"drop the prefix tokens first (drop_prefix) or pass the right grid."
        )
    a = _float(attn)
    d = patch_distances(g, patch_size, a.device, a.dtype)  # (N, N)
    return (a * d).sum(-1).mean(-1)


def attention_entropy(attn: torch.Tensor, normalized: bool = False) -> torch.Tensor:
    """Attention entropy (Fig. 10): mean over queries of -sum_k A log A (natural log, 0 log 0 = 0
    exactly, no epsilon on A); ``normalized`` divides by log N. (..., N, N) -> (...)."""
    _check_attn(attn, "attention_entropy")
    h = torch.special.entr(_float(attn)).sum(-1).mean(-1)
    if normalized:
        n = attn.shape[-1]
        if n < 2:
            raise ValueError("normalised entropy needs at least 2 keys (log N = 0 for N = 1).")
        h = h / math.log(n)
    return h


def attention_nmi(attn: torch.Tensor, row_entropy: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Normalised mutual information between queries and keys (Fig. 6a), per image and head:
    p(q) = 1/N, p(k|q) = A[q,k], p(k) = mean_q A[q,k] (the marginal of *this* image),
    NMI = I(q; k) / sqrt(H(q) H(k)) with H(q) = log N. (..., N, N) -> (...).

    I is computed as H(k) - H(k|q), which equals sum p(q) A log(A / p(k)) term by term without ever
    dividing by a zero p(k). When H(k) = 0 (every query attends to the same single key) there is no
    information to share and NMI is defined as 0. Tiny negative I from rounding is clipped to 0.
    ``row_entropy``: :func:`attention_entropy` of the same attention (= H(k|q)), if already computed,
    saves a second pass over the (B, H, N, N) tensor."""
    _check_attn(attn, "attention_nmi")
    n = attn.shape[-1]
    if n < 2:
        raise ValueError("NMI needs at least 2 tokens (H(q) = log N = 0 for N = 1).")
    if row_entropy is not None and row_entropy.shape != attn.shape[:-2]:
        raise ValueError(
            f"row_entropy of shape {tuple(row_entropy.shape)} does not match attention "
            f"{tuple(attn.shape)}; pass attention_entropy(attn) (unnormalised)."
        )
    a = _float(attn)
    pk = a.mean(-2)  # (..., N): p(k) = sum_q p(q) A[q, k]
    h_k = torch.special.entr(pk).sum(-1)  # (...)
    h_k_given_q = attention_entropy(a) if row_entropy is None else row_entropy.to(a.dtype)  # (...)
    mi = (h_k - h_k_given_q).clamp_min(0)
    denom = torch.sqrt(h_k * math.log(n))
    return torch.where(h_k > 0, mi / torch.where(h_k > 0, denom, torch.ones_like(denom)), torch.zeros_like(mi))


def attention_map(attn: torch.Tensor, query: Tuple[int, int], grid: Grid) -> torch.Tensor:
    """Attention map (Fig. 2) of query patch (i, j) = (column i, row j): row ``j*cols + i`` of the
    renormalised attention (..., N, N) reshaped to (..., rows, cols)."""
    _check_attn(attn, "attention_map")
    rows, cols = _grid(grid)
    if attn.shape[-1] != rows * cols:
        raise ValueError(
            f"attention over {attn.shape[-1]} tokens does not match the {rows}x{cols} grid; "
            f"drop the prefix tokens first (drop_prefix)."
        )
    i, j = int(query[0]), int(query[1])
    if not (0 <= i < cols and 0 <= j < rows):
        raise ValueError(f"query (column, row) = {query} lies outside the {rows}x{cols} patch grid.")
    return _float(attn[..., j * cols + i, :]).reshape(*attn.shape[:-2], rows, cols)


# --------------------------------------------------------------------------------------------- Fourier
def fourier_log_amplitude_diagonal(tokens: torch.Tensor, grid: Grid) -> torch.Tensor:
    """Per-image log amplitude along the diagonal of the centred 2-D spectrum (Fig. 3b), before
    subtracting k = 0: tokens (B, N, C), prefix dropped -> (B, K), K = ceil(L/2).

    log(|FFT2| + 1e-6) of the unnormalised FFT of each channel's L x L map, zero frequency shifted
    to the centre, averaged over channels (mean of logs); entry k is frequency (k, k). Averaging
    these curves over images (streamed as a sum) and subtracting entry 0 gives
    :func:`fourier_relative_log_amplitude`. A non-square grid keeps K = min(ceil(rows/2), ceil(cols/2))."""
    g = _grid(grid)
    _check_tokens(tokens, g, "fourier_log_amplitude_diagonal")
    B, N, C = tokens.shape
    x = _float(tokens).transpose(1, 2).reshape(B, C, g[0], g[1])  # (B, C, rows, cols), row-major tokens
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


# --------------------------------------------------------------------------------------------- spectra
def _check_of(of: str) -> None:
    if of not in SPECTRUM_OF:
        raise ValueError(f"of={of!r}: use 'covariance' (Park et al.'s convention) or 'features'.")


def _relative_log(sv: torch.Tensor, of: str, keep: int) -> torch.Tensor:
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
    return _relative_log(sv, of, min(x.shape[0] - 1, x.shape[1]))


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
    rel = _relative_log(sv, of, min(x.shape[1] - 1, x.shape[2]))  # (B, K)
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

    def spectrum(self, of: str = "covariance") -> torch.Tensor:
        _check_of(of)
        if self.m2 is None or self.n < 2:
            raise ValueError(f"the image-level spectrum needs at least 2 images, got {self.n}.")
        ev = torch.linalg.eigvalsh(self.m2).flip(0).clamp_min(0)  # (C,), descending
        return _relative_log(ev.sqrt(), of, min(self.n - 1, self.m2.shape[0]))


__all__ = [
    "drop_prefix",
    "patch_distances",
    "attention_distance",
    "attention_entropy",
    "attention_nmi",
    "attention_map",
    "fourier_log_amplitude_diagonal",
    "fourier_relative_log_amplitude",
    "singular_spectrum",
    "token_singular_spectrum",
    "global_average_pool",
    "image_singular_spectrum",
    "SpectrumAccumulator",
    "SPECTRUM_OF",
]
