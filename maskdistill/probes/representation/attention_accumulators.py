"""The attention statistics groups of the shared streaming pass (paper Sec. 3: Figs. 2, 3a, 6a, 10).

- ``"attention"``: per (block, head) float64 sums over images of each image's distance, entropy and
  NMI (:func:`~maskdistill.probes.representation.attention_stats.attention_sums`: prefix tokens
  dropped and rows renormalised; per image the mean over queries), computed in float32 on the device,
  the same per-image values (images, depth, H) for the intervals over images, and the attention maps
  of a few images (:class:`MapRequest`);
- ``"attention_maps"``: the maps only, for a short extra pass over the requested images.

A map is the renormalised attention row of a query patch (column i, row j) -- row ``j * cols + i`` --
reshaped to the patch grid, one per head, kept as float32 for the requested images and blocks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, Optional, Tuple

import numpy as np
import torch

from maskdistill.parallel.collectives import gather_objects
from maskdistill.parallel.group import Dist
from maskdistill.probes.core.per_image import PerImageValues
from maskdistill.probes.core.shared_pass import Accumulator, Layout, register_group
from maskdistill.probes.core.state import LayerSums
from maskdistill.probes.representation.attention_stats import attention_sums, drop_prefix, patch_distances

ATTENTION = "attention"
ATTENTION_MAPS = "attention_maps"
STATISTICS = ("distance", "entropy", "nmi")


@dataclass(frozen=True)
class MapRequest:
    """Which attention maps to keep (Fig. 2): dataset positions, 0-based blocks, (column, row) queries."""

    images: Tuple[int, ...] = (0, 1, 2, 3)
    blocks: Optional[Tuple[int, ...]] = None  # None: (0, depth // 2, depth - 1)
    queries: Optional[Tuple[Tuple[int, int], ...]] = None  # None: quarter, centre, three-quarter points

    def resolve(self, depth: int, grid: Tuple[int, int]) -> "MapRequest":
        rows, cols = grid
        blocks = self.blocks if self.blocks is not None else tuple(sorted({0, depth // 2, depth - 1}))
        queries = (
            self.queries
            if self.queries is not None
            else ((cols // 4, rows // 4), (cols // 2, rows // 2), ((3 * cols) // 4, (3 * rows) // 4))
        )
        for b in blocks:
            if not 0 <= b < depth:
                raise ValueError(f"attention map block {b} does not exist; the model has blocks 0..{depth - 1}.")
        for i, j in queries:
            if not (0 <= i < cols and 0 <= j < rows):
                raise ValueError(f"query (column, row) = ({i}, {j}) lies outside the {rows}x{cols} patch grid.")
        return MapRequest(
            tuple(int(i) for i in self.images),
            tuple(int(b) for b in blocks),
            tuple((int(i), int(j)) for i, j in queries),
        )


@dataclass
class KeptMaps:
    request: MapRequest  # as asked (before the defaults were filled in)
    resolved: Optional[MapRequest]  # the images, blocks and queries kept (None: no attention seen)
    values: Dict[Tuple[int, int], np.ndarray]  # (image, block) -> (H, Q, rows, cols) float32
    heads: int


@dataclass
class AttentionStats:
    """(depth, H) float64 sums over images of per-image means over queries (None: not computed), and
    ``per_image``: statistic -> the per-image values (images, depth, H) float32."""

    distance: Optional[torch.Tensor]
    entropy: Optional[torch.Tensor]
    nmi: Optional[torch.Tensor]
    heads: int
    maps: KeptMaps
    per_image: Dict[str, Optional[np.ndarray]] = field(default_factory=dict)


@register_group(ATTENTION_MAPS, reads=("attention",), extra_only=True)
class MapKeeper(Accumulator):
    """Keeps the maps of a :class:`MapRequest`; ``strict``: images the data did not reach are an error."""

    def __init__(self, request: Optional[MapRequest] = None, strict: bool = True) -> None:
        self.request = request or MapRequest()
        self.images = self.request.images
        self.strict = strict
        self.resolved: Optional[MapRequest] = None
        self.values: Dict[Tuple[int, int], np.ndarray] = {}
        self.seen: set = set()
        self._batch: Dict[int, int] = {}  # position in the batch -> dataset position

    def begin_batch(self, offset: int, size: int) -> None:
        self._batch = {b: offset + b for b in range(size) if offset + b in self.images}
        self.seen.update(self._batch.values())

    def attention(self, block: int, attn: torch.Tensor, layout: Layout) -> None:  # attn (B, H, T, T)
        if self.resolved is None:
            self.resolved = self.request.resolve(layout.depth, layout.grid)
        req, grid = self.resolved, layout.grid
        if block in req.blocks and self._batch:
            rows = torch.tensor([j * grid[1] + c for c, j in req.queries], device=attn.device)
            for b, img in self._batch.items():
                a = drop_prefix(attn[b : b + 1], layout.num_prefix)[0]  # (H, N, N) renormalised: one image only
                m = a.index_select(1, rows).reshape(a.shape[0], len(rows), *grid)  # (H, Q, rows, cols)
                self.values[(img, block)] = m.cpu().numpy().astype(np.float32)

    def reduce(self, world: Dist) -> None:
        """Every rank's kept maps (each image lies on one rank)."""
        parts = gather_objects((self.values, self.seen, self.resolved), world)
        self.values = {k: v for values, _, _ in parts for k, v in values.items()}
        self.seen = set().union(*(seen for _, seen, _ in parts))
        self.resolved = next((r for _, _, r in parts if r is not None), None)

    def finish(self, n_images: int) -> KeptMaps:
        missing = sorted(set(self.images) - self.seen)
        if self.strict and missing:
            raise ValueError(
                f"attention maps asked for image(s) {missing}, which lie beyond the {n_images} "
                f"analysed images; raise --images or pick images below it."
            )
        heads = next(iter(self.values.values())).shape[0] if self.values else 0
        return KeptMaps(self.request, self.resolved, self.values, heads)


@register_group(ATTENTION, reads=("attention",))
class AttentionAccumulator(Accumulator):
    """Distance, entropy and NMI sums per (block, head), and the maps of a request (default ``MapRequest()``)."""

    def __init__(self, request: Optional[MapRequest] = None) -> None:
        self.maps = MapKeeper(request, strict=False)
        self.images = self.maps.images
        self.sums = {k: LayerSums() for k in STATISTICS}
        self.values = {k: PerImageValues() for k in STATISTICS}
        self._dist: Dict[Any, torch.Tensor] = {}  # patch distances per (grid, patch size, device)

    def begin_batch(self, offset: int, size: int) -> None:
        self.maps.begin_batch(offset, size)

    def attention(self, block: int, attn: torch.Tensor, layout: Layout) -> None:  # attn (B, H, T, T)
        self.maps.attention(block, attn, layout)
        key = (layout.grid, layout.patch_size, attn.device)
        if key not in self._dist:
            self._dist[key] = patch_distances(layout.grid, layout.patch_size, attn.device)  # (N, N) float32
        values = attention_sums(attn, layout.num_prefix, self._dist[key])  # (B, H) each
        for name, value in zip(STATISTICS, values):
            self.sums[name].add(block, value.sum(0), layout.depth)
            self.values[name].add(block, value, layout.depth)

    def finish(self, n_images: int) -> AttentionStats:
        distance, entropy, nmi = (self.sums[k].result() for k in STATISTICS)
        heads = int(distance.shape[1]) if distance is not None else 0
        per_image = {k: self.values[k].result() for k in STATISTICS}
        return AttentionStats(distance, entropy, nmi, heads, self.maps.finish(n_images), per_image)


__all__ = [
    "ATTENTION",
    "ATTENTION_MAPS",
    "AttentionAccumulator",
    "AttentionStats",
    "KeptMaps",
    "MapKeeper",
    "MapRequest",
]
