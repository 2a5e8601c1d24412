"""One streaming forward pass per model behind every attention and representation probe (paper
Secs. 3-4: Figs. 2, 3a, 3b, 4, 5, 6a-c, 10; conventions of docs/PROBES.md).

Each batch runs through the model once under :func:`maskdistill.models.capture.capture` with
callbacks: every block's attention (B, H, T, T) and every residual-stream point (B, T, C) is reduced
on the device the moment it is produced (float32 attention statistics, float64 spectra, autocast off)
and only the small sums are kept: per (layer, head) sums over images, per-layer sums of curves, and
one C x C scatter matrix per layer for the image-level spectrum. Memory therefore does not grow with
the number of images, and no layer's attention outlives its own block. Attention maps are kept only
for the few requested images, blocks and queries.

Layer convention: attention layer i (1..depth) is the attention inside block i; token layer i
(0..depth) is the residual stream after block i, layer 0 being the patch embedding (+ position
embedding), all before the final norm.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Set, Tuple

import numpy as np
import torch

from maskdistill.models.capture import capture
from maskdistill.probes.representation import functional as F

GROUPS = ("attention", "fourier", "token_spectrum", "image_spectrum")
# Which part of the pass each probe reads; probes not listed need nothing from it.
PROBE_GROUPS: Dict[str, str] = {
    "attention_map": "attention",
    "attention_distance": "attention",
    "attention_entropy": "attention",
    "attention_nmi": "attention",
    "feature_fourier": "fourier",
    "token_singular_values": "token_spectrum",
    "image_singular_values": "image_spectrum",
}


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
class SharedStats:
    """What the pass leaves: sums over images (divide by ``n_images``) and the kept maps."""

    groups: Set[str]
    n_images: int
    depth: int
    heads: int
    grid: Tuple[int, int]
    patch_size: int
    num_prefix: int
    img_size: int
    seconds: float
    # attention: (depth, H) float64 sums over images of per-image means over queries
    distance: Optional[torch.Tensor] = None
    entropy: Optional[torch.Tensor] = None
    nmi: Optional[torch.Tensor] = None
    request: Optional[MapRequest] = None  # the maps asked for, as asked (before defaults were filled in)
    maps: Optional[MapRequest] = None  # resolved: the images, blocks and queries kept
    map_values: Dict[Tuple[int, int], np.ndarray] = field(default_factory=dict)  # (image, block) -> (H, Q, rows, cols)
    map_images: Dict[int, np.ndarray] = field(default_factory=dict)  # image -> (S, S, 3) uint8 as the model saw it
    # tokens: (depth + 1, K) float64 sums over images
    fourier: Optional[torch.Tensor] = None
    token_spectrum: Optional[torch.Tensor] = None  # of="features"; "covariance" is exactly twice
    image_accumulators: List[F.SpectrumAccumulator] = field(default_factory=list)

    def merge(self, other: "SharedStats") -> None:
        """Take over the groups another pass computed (same model and images)."""
        for name in ("distance", "entropy", "nmi", "maps", "fourier", "token_spectrum"):  # (None: not computed)
            if getattr(other, name) is not None:
                setattr(self, name, getattr(other, name))
        if "attention" in other.groups:
            self.request, self.map_values, self.map_images = other.request, other.map_values, other.map_images
        if other.image_accumulators:
            self.image_accumulators = other.image_accumulators
        self.groups |= other.groups
        self.seconds += other.seconds


def _grid_of(tokens: int, num_prefix: int, static: Tuple[int, int]) -> Tuple[int, int]:
    n = tokens - num_prefix
    if n == static[0] * static[1]:
        return static
    side = math.isqrt(n)
    if side * side != n:
        raise ValueError(f"{n} patch tokens fit neither the {static} grid nor a square one.")
    return (side, side)


def attention_sums(attn: torch.Tensor, num_prefix: int, dist: torch.Tensor) -> Tuple[torch.Tensor, ...]:
    """Distance, entropy and NMI per image and head, (B, H) each, of post-softmax attention (B, H, T, T)
    -- the same numbers as ``functional.attention_distance/entropy/nmi(drop_prefix(attn, num_prefix))``
    without materialising the renormalised copy (the costliest step of the pass): with the patch block
    a = A[p:, p:], row mass s_q = sum_k a[q,k] and r = a / s (rows with s = 0 stay zero, as in
    drop_prefix),
      distance_q = (sum_k a D) / s_q,  H_q = -sum_k r log r = (sum_k entr(a)) / s_q + log s_q,
      p(k) = mean_q a[q,k] / s_q (one batched mat-vec),  NMI = (H(k) - mean_q H_q) / sqrt(H(k) log N).
    ``dist``: (N, N) patch distances in pixels (``functional.patch_distances``)."""
    a = attn[..., num_prefix:, num_prefix:]  # (B, H, N, N) view, no copy
    a = a if a.dtype in (torch.float32, torch.float64) else a.float()
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


def _to_uint8(x: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """(3, S, S) normalised image -> (S, S, 3) uint8, for overlays."""
    m = torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(-1, 1, 1)
    img = (x.detach().float().cpu() * s + m).clamp(0, 1) * 255
    return img.round().to(torch.uint8).permute(1, 2, 0).numpy()


def run_shared_pass(
    ctx: Any, groups: Set[str], maps: Optional[MapRequest] = None, maps_only: bool = False
) -> SharedStats:
    """Stream ``ctx.batches()`` through ``ctx.model`` once, computing the ``groups`` asked for.
    ``maps_only``: keep only the attention maps of ``maps`` and stop after its last image (a cheap
    extra pass when a probe asks for other maps than the shared pass kept)."""
    if maps_only:
        groups = {"attention"}
    unknown = set(groups) - set(GROUPS)
    if unknown:
        raise ValueError(f"unknown statistics group(s) {sorted(unknown)}; known: {GROUPS}.")
    want_attn = "attention" in groups
    want_tokens = bool(set(groups) & {"fourier", "token_spectrum", "image_spectrum"})
    maps = maps or MapRequest()
    st: Dict[str, Any] = {"offset": 0, "grid": None}
    acc: Dict[str, Any] = {}
    kept_maps: Dict[Tuple[int, int], np.ndarray] = {}
    kept_images: Dict[int, np.ndarray] = {}

    def add(key: str, row: int, value: torch.Tensor, rows: int) -> None:
        if key not in acc:
            acc[key] = torch.zeros((rows,) + tuple(value.shape), dtype=torch.float64, device=value.device)
        acc[key][row] += value.to(torch.float64)

    dists: Dict[Any, torch.Tensor] = {}  # patch distances per (grid, patch size, device)
    holder: Dict[str, Any] = {}  # the Capture, known once the context is entered (callbacks fire later)
    map_req: List[MapRequest] = []
    batch_images: Dict[int, int] = {}  # position in the batch -> dataset position (maps only)

    def on_attention(i: int, attn: torch.Tensor) -> None:  # attn (B, H, T, T), model dtype
        cap = holder["cap"]
        with torch.autocast(attn.device.type, enabled=False):
            grid = st["grid"] = _grid_of(attn.shape[-1], cap.num_prefix, cap.static_grid)
            if not map_req:
                map_req.append(maps.resolve(cap.depth, grid))
            keep_maps(i, attn, grid, cap.num_prefix)
            if maps_only:
                return
            key = (grid, cap.patch_size, attn.device)
            if key not in dists:
                dists[key] = F.patch_distances(grid, cap.patch_size, attn.device)  # (N, N) float32
            dist, ent, nmi = attention_sums(attn, cap.num_prefix, dists[key])  # (B, H) each
            add("distance", i, dist.sum(0), cap.depth)
            add("entropy", i, ent.sum(0), cap.depth)
            add("nmi", i, nmi.sum(0), cap.depth)

    def keep_maps(i: int, attn: torch.Tensor, grid: Tuple[int, int], p: int) -> None:  # attn (B, H, T, T)
        req = map_req[0]
        if i in req.blocks and batch_images:
            rows = torch.tensor([j * grid[1] + c for c, j in req.queries], device=attn.device)
            for b, img in batch_images.items():
                a = F.drop_prefix(attn[b : b + 1], p)[0]  # (H, N, N) renormalised: one image only
                m = a.index_select(1, rows).reshape(a.shape[0], len(rows), *grid)  # (H, Q, rows, cols)
                kept_maps[(img, i)] = m.cpu().numpy().astype(np.float32)

    def on_tokens(i: int, x: torch.Tensor) -> None:  # x (B, T, C), model dtype
        cap = holder["cap"]
        with torch.autocast(x.device.type, enabled=False):
            grid = st["grid"] = _grid_of(x.shape[1], cap.num_prefix, cap.static_grid)
            t = x[:, cap.num_prefix :]  # (B, N, C) patch tokens
            if "fourier" in groups:
                add("fourier", i, F.fourier_log_amplitude_diagonal(t, grid).sum(0), cap.depth + 1)
            if "token_spectrum" in groups:
                add(
                    "token_spectrum",
                    i,
                    F.token_singular_spectrum(t, of="features", per_image=True).sum(0),
                    cap.depth + 1,
                )
            if "image_spectrum" in groups:
                if "image" not in acc:
                    acc["image"] = [F.SpectrumAccumulator() for _ in range(cap.depth + 1)]
                acc["image"][i].update(F.global_average_pool(t))

    start = time.perf_counter()
    with (
        capture(
            ctx.model,
            attention=want_attn,
            tokens=want_tokens,
            dtype=None,
            on_attention=on_attention if want_attn else None,
            on_tokens=on_tokens if want_tokens else None,
        ) as cap,
        torch.inference_mode(),
    ):
        holder["cap"] = cap
        for x, _y in ctx.batches(desc=f"{ctx.name}: attention/tokens"):  # x (B, 3, S, S) normalised
            b0 = st["offset"]
            batch_images.clear()
            if want_attn:
                for b in range(x.shape[0]):
                    if b0 + b in maps.images:
                        batch_images[b] = b0 + b
                        kept_images[b0 + b] = _to_uint8(x[b], ctx.mean, ctx.std)
            if maps_only and not batch_images:
                if b0 > max(maps.images, default=-1):
                    break
                st["offset"] += x.shape[0]
                continue
            with ctx.autocast():
                ctx.model(x)
            st["offset"] += x.shape[0]
    depth, P, p = cap.depth, cap.patch_size, cap.num_prefix
    if maps_only:
        missing = sorted(set(maps.images) - set(kept_images))
        if missing:
            raise ValueError(
                f"attention maps asked for image(s) {missing}, which lie beyond the {st['offset']} "
                f"analysed images; raise --images or pick images below it."
            )
    if st["offset"] < 2 and ("image_spectrum" in groups):
        raise ValueError(f"the image-level spectrum needs at least 2 images; the data gave {st['offset']}.")
    if st["offset"] == 0:
        raise ValueError(f"the data gave no images to analyse ({ctx.data.spec}).")
    heads = int(acc["distance"].shape[1]) if "distance" in acc else 0
    out = SharedStats(
        groups=set(groups),
        n_images=int(st["offset"]),
        depth=depth,
        heads=heads,
        grid=tuple(st["grid"] or cap.static_grid),
        patch_size=P,
        num_prefix=p,
        img_size=int(ctx.img_size),
        seconds=time.perf_counter() - start,
    )
    if maps_only:
        out.heads = next(iter(kept_maps.values())).shape[0] if kept_maps else 0
    elif want_attn:
        out.distance, out.entropy, out.nmi = (acc[k].cpu() for k in ("distance", "entropy", "nmi"))
    if want_attn:
        out.request = maps
        out.maps = map_req[0] if map_req else None
        out.map_values, out.map_images = kept_maps, kept_images
    if "fourier" in groups:
        out.fourier = acc["fourier"].cpu()
    if "token_spectrum" in groups:
        out.token_spectrum = acc["token_spectrum"].cpu()
    if "image_spectrum" in groups:
        out.image_accumulators = acc["image"]
    return out


__all__ = ["GROUPS", "PROBE_GROUPS", "MapRequest", "SharedStats", "attention_sums", "run_shared_pass"]
