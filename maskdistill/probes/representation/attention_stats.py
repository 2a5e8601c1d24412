"""Attention statistics on post-softmax attention tensors (paper Sec. 3): the maps of Fig. 2, the
average attention distance (Fig. 3a), the attention entropy (Fig. 10) and the normalised mutual
information between queries and keys (Fig. 6a).

Convention (Park et al. 2022): the prefix tokens (CLS, registers) are dropped from rows and columns
and every row is renormalised to sum to 1 (:func:`drop_prefix`); each statistic is then taken per
query and averaged over the queries, giving one value per image and head, (B, H), which a streaming
caller sums batch by batch. :func:`attention_sums` gives the same three numbers straight from the
attention with its prefix, without the renormalised copy. Statistics run in float32 (float64 input
stays float64).
"""

from __future__ import annotations

import math
from typing import Optional, Tuple

import torch

from maskdistill.probes.representation.inputs import Grid, as_grid, stat_float


def _check_attn(attn: torch.Tensor, name: str) -> None:
    if attn.ndim < 2 or attn.shape[-1] != attn.shape[-2]:
        raise ValueError(f"{name} expects attention of shape (..., N, N) (e.g. (B, H, N, N)), got {tuple(attn.shape)}.")


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
    a = stat_float(attn[..., p:, p:])  # (B, H, N, N)
    s = a.sum(-1, keepdim=True)
    return torch.where(s > 0, a / torch.where(s > 0, s, torch.ones_like(s)), torch.zeros_like(a))


def patch_distances(
    grid: Grid, patch_size: int, device: Optional[torch.device] = None, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """(N, N) Euclidean distances in input pixels between patch centres, row-major token order."""
    rows, cols = as_grid(grid)
    r = torch.arange(rows, device=device, dtype=torch.float64).repeat_interleave(cols)  # (N,)
    c = torch.arange(cols, device=device, dtype=torch.float64).repeat(rows)  # (N,)
    d = torch.sqrt((r[:, None] - r[None]) ** 2 + (c[:, None] - c[None]) ** 2) * float(patch_size)
    return d.to(dtype)


def attention_distance(attn: torch.Tensor, grid: Grid, patch_size: int) -> torch.Tensor:
    """Average attention distance (Fig. 3a) in pixels: mean over queries of sum_k A[q,k] D[q,k].
    attn (..., N, N) (e.g. (B, H, N, N), prefix dropped) -> (...) (e.g. (B, H))."""
    _check_attn(attn, "attention_distance")
    g = as_grid(grid)
    if attn.shape[-1] != g[0] * g[1]:
        raise ValueError(
            f"attention over {attn.shape[-1]} tokens does not match the {g[0]}x{g[1]} grid; "
            f"drop the prefix tokens first (drop_prefix) or pass the right grid."
        )
    a = stat_float(attn)
    d = patch_distances(g, patch_size, a.device, a.dtype)  # (N, N)
    return (a * d).sum(-1).mean(-1)


def attention_entropy(attn: torch.Tensor, normalized: bool = False) -> torch.Tensor:
    """Attention entropy (Fig. 10): mean over queries of -sum_k A log A (natural log, 0 log 0 = 0
    exactly, no epsilon on A); ``normalized`` divides by log N. (..., N, N) -> (...)."""
    _check_attn(attn, "attention_entropy")
    h = torch.special.entr(stat_float(attn)).sum(-1).mean(-1)
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
    a = stat_float(attn)
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
    rows, cols = as_grid(grid)
    if attn.shape[-1] != rows * cols:
        raise ValueError(
            f"attention over {attn.shape[-1]} tokens does not match the {rows}x{cols} grid; "
            f"drop the prefix tokens first (drop_prefix)."
        )
    i, j = int(query[0]), int(query[1])
    if not (0 <= i < cols and 0 <= j < rows):
        raise ValueError(f"query (column, row) = {query} lies outside the {rows}x{cols} patch grid.")
    return stat_float(attn[..., j * cols + i, :]).reshape(*attn.shape[:-2], rows, cols)


def attention_sums(attn: torch.Tensor, num_prefix: int, dist: torch.Tensor) -> Tuple[torch.Tensor, ...]:
    """Distance, entropy and NMI per image and head, (B, H) each, of post-softmax attention (B, H, T, T)
    -- the numbers :func:`attention_distance`, :func:`attention_entropy` and :func:`attention_nmi` give
    on ``drop_prefix(attn, num_prefix)``, without materialising the renormalised copy (the costliest
    step of a streaming pass): with the patch block
    a = A[p:, p:], row mass s_q = sum_k a[q,k] and r = a / s (rows with s = 0 stay zero, as in
    drop_prefix),
      distance_q = (sum_k a D) / s_q,  H_q = -sum_k r log r = (sum_k entr(a)) / s_q + log s_q,
      p(k) = mean_q a[q,k] / s_q (one batched mat-vec),  NMI = (H(k) - mean_q H_q) / sqrt(H(k) log N).
    ``dist``: (N, N) patch distances in pixels (:func:`patch_distances`)."""
    a = stat_float(attn[..., num_prefix:, num_prefix:])  # (B, H, N, N) view, no copy (unless half precision)
    n = a.shape[-1]
    s = a.sum(-1)  # (B, H, N)
    pos = s > 0
    s_safe = torch.where(pos, s, torch.ones_like(s))
    inv = torch.where(pos, 1.0 / s_safe, torch.zeros_like(s))
    distance = ((a * dist.to(a.dtype)).sum(-1) * inv).mean(-1)  # (B, H)
    h_rows = torch.special.entr(a).sum(-1) * inv + torch.log(s_safe)  # (B, H, N); 0 where s = 0
    entropy = h_rows.mean(-1)  # (B, H)
    pk = torch.matmul(inv.unsqueeze(-2), a).squeeze(-2) / n  # (B, H, N): p(k) of each image
    h_k = torch.special.entr(pk).sum(-1)
    mi = (h_k - entropy).clamp_min(0)
    denom = torch.sqrt(h_k * math.log(n))
    nmi = torch.where(h_k > 0, mi / torch.where(h_k > 0, denom, torch.ones_like(denom)), torch.zeros_like(mi))
    return distance, entropy, nmi


__all__ = [
    "attention_distance",
    "attention_entropy",
    "attention_map",
    "attention_nmi",
    "attention_sums",
    "drop_prefix",
    "patch_distances",
]
