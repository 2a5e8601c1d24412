"""Registered attention probes (paper Sec. 3): ``attention_map`` (Fig. 2), ``attention_distance``
(Fig. 3a), ``attention_entropy`` (Fig. 10), ``attention_nmi`` (Fig. 6a).

All four read the ``"attention"`` group of the one shared streaming pass: post-softmax attention,
prefix tokens dropped and rows renormalised, statistics in float32 and summed in float64, per
(layer, head) the mean over queries, then over images; the per-layer value is the mean over heads.
Layer i (1..depth) is block i's attention.

Tables (tidy, one row per number): ``layer``, ``head`` (empty for per-layer rows), ``metric``,
``value``.
"""

from __future__ import annotations

import math
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import pandas as pd
import torch

from maskdistill.probes.core.registry import ProbeResult, register
from maskdistill.probes.core.shared_pass import SharedStats
from maskdistill.probes.representation.attention_accumulators import (
    ATTENTION,
    ATTENTION_MAPS,
    AttentionStats,
    KeptMaps,
    MapRequest,
)
from maskdistill.probes.representation.attention_stats import patch_distances
from maskdistill.probes.representation.layer_intervals import LayerIntervals, describe

HEAD_SPREAD = "attention_entropy_head_std"
CONVENTIONS = (
    "post-softmax attention; prefix (CLS/register) rows and columns dropped, rows renormalised "
    "(Park et al. 2022); per (layer, head): mean over queries, then over images; layer i = "
    "attention inside block i (1-based); per-layer value = mean over heads"
)


def _per_head(stats: SharedStats, sums: torch.Tensor, metric: str, scale: float = 1.0) -> List[dict]:
    """(depth, H) sums over images -> rows per head and per-layer means over heads."""
    mean = (sums / stats.n_images * scale).numpy()  # (depth, H)
    rows = [
        dict(layer=l + 1, head=h, metric=metric, value=float(mean[l, h]))
        for l in range(mean.shape[0])
        for h in range(mean.shape[1])
    ]
    rows += [
        dict(layer=l + 1, head=np.nan, metric=f"{metric}_layer_mean", value=float(mean[l].mean()))
        for l in range(mean.shape[0])
    ]
    return rows


def _meta(ctx: Any, stats: SharedStats, heads: int, **extra: Any) -> dict:
    return ctx.meta(
        **stats.describe(),
        **describe(getattr(ctx, "bootstrap", None), stats.n_images),
        heads=heads,
        conventions=CONVENTIONS,
        layers="1..depth: attention of block i",
        **extra,
    )


def _table(rows: List[dict]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["layer", "head", "metric", "value"]).assign(ci_low=np.nan, ci_high=np.nan)


def _with_intervals(
    ctx: Any, att: AttentionStats, rows: List[dict], metrics: Sequence[Tuple[str, str, float]]
) -> Tuple[pd.DataFrame, Dict[str, np.ndarray]]:
    """The table of ``rows`` with the intervals of each ``(metric, statistic, scale)`` from the
    per-image values of ``statistic`` (distance, entropy or nmi), and the replicates."""
    table, arrays = _table(rows), {}
    intervals = LayerIntervals(table, arrays, getattr(ctx, "bootstrap", None))
    for metric, stat, scale in metrics:
        intervals.per_head(metric, att.per_image.get(stat), scale)
    return table, arrays


def _attention(ctx: Any) -> Tuple[SharedStats, AttentionStats]:
    st = ctx.shared_pass(ATTENTION)
    return st, st.group(ATTENTION)


@register("attention_distance", needs=("attention",), figure="Fig. 3a", shared=ATTENTION)
def attention_distance(ctx: Any) -> ProbeResult:
    """Average attention distance in input pixels per layer and head: mean_q sum_k A[q,k] D[q,k],
    D the Euclidean distance between patch centres times the patch size."""
    st, att = _attention(ctx)
    rows = _per_head(st, att.distance, "attention_distance")
    table, arrays = _with_intervals(ctx, att, rows, [("attention_distance", "distance", 1.0)])
    max_distance = float(st.patch_size * math.hypot(st.grid[0] - 1, st.grid[1] - 1))
    meta = _meta(ctx, st, att.heads, unit="pixels of the model's input", max_distance=max_distance)
    return ProbeResult("attention_distance", ctx.name, table, meta, arrays)


def _head_spread(st: SharedStats, sums: torch.Tensor, metric: str) -> List[dict]:
    """Per layer the standard deviation over heads of the per-head means (Fig. 10's spread)."""
    spread = (sums / st.n_images).numpy().std(-1)
    return [dict(layer=l + 1, head=np.nan, metric=metric, value=float(v)) for l, v in enumerate(spread)]


@register("attention_entropy", needs=("attention",), figure="Fig. 10", shared=ATTENTION)
def attention_entropy(ctx: Any) -> ProbeResult:
    """Attention entropy per layer and head, -sum_k A log A (nats), and divided by log N; per layer
    also the spread over heads (standard deviation of the per-head means, Fig. 10)."""
    st, att = _attention(ctx)
    n = st.grid[0] * st.grid[1]
    rows = (
        _per_head(st, att.entropy, "attention_entropy")
        + _per_head(st, att.entropy, "attention_entropy_normalized", 1.0 / math.log(n))
        + _head_spread(st, att.entropy, HEAD_SPREAD)
    )
    metrics = [("attention_entropy", "entropy", 1.0), ("attention_entropy_normalized", "entropy", 1.0 / math.log(n))]
    table, arrays = _with_intervals(ctx, att, rows, metrics)
    spread = LayerIntervals(table, arrays, getattr(ctx, "bootstrap", None))
    spread.head_spread(HEAD_SPREAD, att.per_image.get("entropy"))
    meta = _meta(
        ctx,
        st,
        att.heads,
        unit="nats (natural log); normalized: divided by log N",
        log_n=math.log(n),
        head_spread="standard deviation over heads (ddof 0) of the per-head mean entropy",
    )
    return ProbeResult("attention_entropy", ctx.name, table, meta, arrays)


@register("attention_nmi", needs=("attention",), figure="Fig. 6a", shared=ATTENTION)
def attention_nmi(ctx: Any) -> ProbeResult:
    """Normalised mutual information between queries and keys per layer and head (per image,
    p(k) the marginal of that image; NMI = I / sqrt(H(q) H(k)); mean over images)."""
    st, att = _attention(ctx)
    table, arrays = _with_intervals(ctx, att, _per_head(st, att.nmi, "attention_nmi"), [("attention_nmi", "nmi", 1.0)])
    meta = _meta(ctx, st, att.heads, normalisation="I(q;k) / sqrt(H(q) H(k)), H(q) = log N; 0 when H(k) = 0")
    return ProbeResult("attention_nmi", ctx.name, table, meta, arrays)


def _kept_maps(ctx: Any, req: MapRequest) -> Tuple[SharedStats, KeptMaps]:
    """The maps of ``req``: kept by the shared pass (run now, keeping them, if it has not run yet),
    else -- when it kept other maps -- from a short pass over the requested images only."""
    st = ctx.shared_pass(ATTENTION, request=req)
    kept = st.group(ATTENTION).maps
    if kept.request == req:
        return st, kept
    st = ctx.images_pass(ATTENTION_MAPS, req)
    return st, st.group(ATTENTION_MAPS)


def _map_rows(maps: np.ndarray, kept: List[int], res: MapRequest, st: SharedStats) -> List[dict]:
    """Per map (image, layer, head, query): its weight on the query patch, its distance and entropy."""
    d = patch_distances(st.grid, st.patch_size, dtype=torch.float64).numpy()  # (N, N)
    rows = []
    for a, img in enumerate(kept):
        for bi, b in enumerate(res.blocks):
            for h in range(maps.shape[2]):
                for qi, (c, r) in enumerate(res.queries):
                    m = maps[a, bi, h, qi].astype(np.float64).ravel()  # (N,)
                    q = r * st.grid[1] + c
                    ent = float(torch.special.entr(torch.from_numpy(m)).sum())
                    where = dict(image=img, layer=b + 1, head=h, query_col=c, query_row=r)
                    values = {"weight_at_query": m[q], "map_distance": float(m @ d[q]), "map_entropy": ent}
                    rows += [dict(where, metric=metric, value=float(v)) for metric, v in values.items()]
    return rows


@register("attention_map", needs=("attention",), figure="Fig. 2", shared=ATTENTION)
def attention_map(
    ctx: Any,
    images: Sequence[int] = (0, 1, 2, 3),
    layers: Optional[Sequence[int]] = None,
    queries: Optional[Sequence[Tuple[int, int]]] = None,
) -> ProbeResult:
    """Attention maps of query patches (column, row) for a few images (positions in the analysed
    set) and layers (1-based; default first, middle, last), every head. Arrays: ``maps`` (images,
    layers, heads, queries, rows, cols), ``images`` (images, S, S, 3) uint8 as the model saw them;
    the table has per map its weight on the query patch, its distance and its entropy."""
    blocks = None if layers is None else tuple(int(l) - 1 for l in layers)
    req = MapRequest(
        tuple(int(i) for i in images), blocks, None if queries is None else tuple((int(c), int(r)) for c, r in queries)
    )
    st, found = _kept_maps(ctx, req)
    res = found.resolved
    kept = [i for i in res.images if i in st.kept_images]
    if not kept:
        raise ValueError(
            f"no attention map kept: image(s) {list(res.images)} lie beyond the {st.n_images} "
            f"analysed images; raise --images or pick images below it."
        )
    maps = np.stack([np.stack([found.values[(i, b)] for b in res.blocks]) for i in kept])  # (I, L, H, Q, r, c)
    table = pd.DataFrame(
        _map_rows(maps, kept, res, st), columns=["image", "layer", "head", "query_col", "query_row", "metric", "value"]
    )
    arrays = {
        "maps": maps,
        "images": np.stack([st.kept_images[i] for i in kept]),
        "image_index": np.asarray(kept),
        "layers": np.asarray(res.blocks) + 1,
        "queries": np.asarray(res.queries, dtype=np.int64).reshape(-1, 2),
    }
    meta = _meta(
        ctx,
        st,
        found.heads,
        images_kept=kept,
        map_layers=[b + 1 for b in res.blocks],
        queries=[list(q) for q in res.queries],
        query_convention="(column i, row j): row j*cols + i of the renormalised attention; "
        "the query box is the PxP square at pixel (P*i, P*j)",
    )
    return ProbeResult("attention_map", ctx.name, table, meta, arrays)


__all__ = ["attention_distance", "attention_entropy", "attention_nmi", "attention_map", "CONVENTIONS"]
