"""One streaming forward pass per model behind every attention and representation probe (paper
Secs. 3-4: Figs. 2, 3a, 3b, 4, 5, 6a-c, 10).

Each batch runs through the model once under :func:`maskdistill.models.capture.capture` with
callbacks: every block's post-softmax attention (B, H, T, T) and every residual-stream point
(B, T, C) is handed, the moment it is produced and with autocast off, to the accumulators of the
statistics groups asked for. They reduce it on the device into small running sums (per (layer, head)
sums over images, per-layer sums of curves, one C x C scatter matrix per layer), so memory does not
grow with the number of images and no layer's attention outlives its own block. The pass also keeps,
as uint8 pictures, the few input images an accumulator asks for (those under the attention maps).

Under torchrun each rank streams its contiguous share of the images (``ctx.batches()``), and before
``finish`` every accumulator's state is reduced across the ranks (:func:`reduce_state`): running
sums all-reduced, per-image values gathered in image order, kept maps and pictures gathered, so
every rank finishes with what one process would have.

The probe families register their statistics groups here (:func:`register_group`), each with the
accumulator it feeds; this module knows none of them by name.

Layer convention: attention layer i (1..depth) is the attention inside block i; token layer i
(0..depth) is the residual stream after block i, layer 0 being the patch embedding (+ position
embedding), all before the final norm.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterable, Mapping, Optional, Sequence, Set, Tuple

import numpy as np
import torch

from maskdistill.models.capture import capture
from maskdistill.parallel.collectives import gather_objects, sum_floats
from maskdistill.parallel.group import SINGLE, Dist
from maskdistill.probes.core.registry import load_builtin
from maskdistill.probes.core.state import reduce_state


@dataclass(frozen=True)
class Layout:
    """What an accumulator knows of the model and the current input: blocks, prefix tokens (CLS,
    registers), pixels per patch side and the (rows, cols) patch grid of this forward."""

    depth: int
    num_prefix: int
    patch_size: int
    grid: Tuple[int, int]


class Accumulator:
    """The running state of one statistics group over one pass; a group overrides what it reads."""

    images: Tuple[int, ...] = ()  # dataset positions whose input pictures the pass keeps

    def begin_batch(self, offset: int, size: int) -> None:
        """A batch of ``size`` images, the first at dataset position ``offset``, is about to run."""

    def attention(self, block: int, attn: torch.Tensor, layout: Layout) -> None:
        """Post-softmax attention (B, H, T, T) of block ``block`` (0-based), in the model's dtype."""

    def tokens(self, layer: int, x: torch.Tensor, layout: Layout) -> None:
        """The residual stream (B, T, C) at token layer ``layer``, in the model's dtype."""

    def reduce(self, world: Dist) -> None:
        """Combine this state with the other ranks' (in place); a group whose state holds more than
        :class:`LayerSums`, :class:`PerImageValues` and objects with a ``reduce`` overrides it."""
        for value in vars(self).values():
            reduce_state(value, world)

    def finish(self, n_images: int) -> Any:
        """The group's result after ``n_images`` images; raises when they cannot give it."""
        raise NotImplementedError


@dataclass(frozen=True)
class StatisticsGroup:
    name: str
    reads: Tuple[str, ...]  # what the capture must deliver: "attention" and/or "tokens"
    make: Callable[[Any], Accumulator]  # make(request) -> a fresh accumulator; request None: the default
    extra_only: bool = False  # computed only by an extra pass asked for by name, never by the pass for all


_GROUPS: Dict[str, StatisticsGroup] = {}


def register_group(
    name: str, reads: Sequence[str], extra_only: bool = False
) -> Callable[[Callable[[Any], Accumulator]], Any]:
    """Decorator on an accumulator factory (a class or function taking the group's request):
    ``@register_group("fourier", reads=("tokens",))``. ``extra_only``: the group serves short extra
    passes only (e.g. other attention maps) and is left out of the pass that computes every group."""
    bad = set(reads) - {"attention", "tokens"}
    if bad or not reads:
        raise ValueError(f"group {name!r}: reads {tuple(reads)}; give 'attention' and/or 'tokens'.")

    def deco(make: Callable[[Any], Accumulator]) -> Callable[[Any], Accumulator]:
        _GROUPS[name] = StatisticsGroup(name, tuple(reads), make, extra_only)
        return make

    return deco


def group_names(extra: bool = False) -> Tuple[str, ...]:
    """The registered statistics groups of the pass for all probes (``extra``: also those of extra
    passes only), in registration order."""
    load_builtin()
    return tuple(g for g, spec in _GROUPS.items() if extra or not spec.extra_only)


@dataclass
class SharedStats:
    """What a pass leaves: each group's result (sums over images: divide by ``n_images``) and the
    kept input pictures."""

    results: Dict[str, Any]
    n_images: int
    depth: int
    grid: Tuple[int, int]
    patch_size: int
    num_prefix: int
    img_size: int
    seconds: float
    kept_images: Dict[int, np.ndarray] = field(default_factory=dict)  # position -> (S, S, 3) uint8 as seen
    forward_passes: int = 0  # batches the model ran on this process (rank 0: the biggest share)

    @property
    def groups(self) -> Set[str]:
        return set(self.results)

    def group(self, name: str) -> Any:
        if name not in self.results:
            raise KeyError(f"the shared pass did not compute the group {name!r} (it computed {sorted(self.results)}).")
        return self.results[name]

    def describe(self) -> Dict[str, Any]:
        """What every result of this pass records about it."""
        return dict(
            images=self.n_images,
            depth=self.depth,
            grid=list(self.grid),
            patch_size=self.patch_size,
            num_prefix=self.num_prefix,
            seconds_shared_pass=round(self.seconds, 3),
            forward_passes=self.forward_passes,
        )

    def merge(self, other: "SharedStats") -> None:
        """Take over the groups another pass computed (same model and images)."""
        self.results.update(other.results)
        self.kept_images.update(other.kept_images)
        self.seconds += other.seconds
        self.forward_passes += other.forward_passes


def _to_uint8(x: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """(3, S, S) normalised image -> (S, S, 3) uint8, for overlays."""
    m = torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(-1, 1, 1)
    img = (x.detach().float().cpu() * s + m).clamp(0, 1) * 255
    return img.round().to(torch.uint8).permute(1, 2, 0).numpy()


class _Dispatch:
    """The capture callbacks: each record goes, with its layout and autocast off, to the accumulators
    that read it."""

    def __init__(self, accs: Mapping[str, Accumulator]) -> None:
        self.on_attention = [a for g, a in accs.items() if "attention" in _GROUPS[g].reads]
        self.on_tokens = [a for g, a in accs.items() if "tokens" in _GROUPS[g].reads]
        self.cap: Any = None  # the Capture, known once its context is entered (callbacks fire later)
        self.grid: Optional[Tuple[int, int]] = None

    def _layout(self, seq: int) -> Layout:
        cap = self.cap
        self.grid = cap.grid_for(seq)
        return Layout(cap.depth, cap.num_prefix, cap.patch_size, self.grid)

    def attention(self, i: int, attn: torch.Tensor) -> None:  # attn (B, H, T, T), model dtype
        with torch.autocast(attn.device.type, enabled=False):
            layout = self._layout(attn.shape[-1])
            for acc in self.on_attention:
                acc.attention(i, attn, layout)

    def tokens(self, i: int, x: torch.Tensor) -> None:  # x (B, T, C), model dtype
        with torch.autocast(x.device.type, enabled=False):
            layout = self._layout(x.shape[1])
            for acc in self.on_tokens:
                acc.tokens(i, x, layout)


def _accumulators(groups: Iterable[str], requests: Mapping[str, Any]) -> Dict[str, Accumulator]:
    known = group_names(extra=True)
    unknown = set(groups) - set(known)
    if unknown:
        raise ValueError(f"unknown statistics group(s) {sorted(unknown)}; known: {known}.")
    return {g: _GROUPS[g].make(requests.get(g)) for g in known if g in set(groups)}


def _stream(
    ctx: Any, accs: Mapping[str, Accumulator], kept: Dict[int, np.ndarray], images_only: bool
) -> Tuple[int, int, Layout]:
    """Run the batches through the model under the capture, keeping the asked-for pictures in
    ``kept``; returns the number of images streamed, the forward passes run and the layout of the
    last forward."""
    keep = set().union(*(a.images for a in accs.values()))
    last = max(keep, default=-1)
    d = _Dispatch(accs)
    offset = int(getattr(ctx, "shard_start", 0))  # this rank's first image (0 in one process)
    first, passes = offset, 0
    with (
        capture(
            ctx.model,
            attention=bool(d.on_attention),
            tokens=bool(d.on_tokens),
            dtype=None,
            on_attention=d.attention if d.on_attention else None,
            on_tokens=d.tokens if d.on_tokens else None,
        ) as cap,
        torch.inference_mode(),
    ):
        d.cap = cap
        for x, _y in ctx.batches(desc=f"{ctx.name}: attention/tokens"):  # x (B, 3, S, S) normalised
            n = int(x.shape[0])
            held = [b for b in range(n) if offset + b in keep]
            for b in held:
                kept[offset + b] = _to_uint8(x[b], ctx.mean, ctx.std)
            if images_only and not held:
                if offset > last:
                    break
                offset += n
                continue
            for acc in accs.values():
                acc.begin_batch(offset, n)
            with ctx.autocast():
                ctx.model(x)
            offset += n
            passes += 1
    return offset - first, passes, Layout(cap.depth, cap.num_prefix, cap.patch_size, tuple(d.grid or cap.static_grid))


def run_shared_pass(
    ctx: Any, groups: Iterable[str], requests: Optional[Mapping[str, Any]] = None, images_only: bool = False
) -> SharedStats:
    """Stream ``ctx.batches()`` through ``ctx.model`` once, feeding the accumulators of ``groups``
    (``requests``: group -> its option, e.g. which attention maps to keep). ``images_only``: run the
    model only on the batches holding an image some accumulator keeps, and stop after the last (a
    cheap extra pass for per-image outputs such as other attention maps)."""
    accs = _accumulators(groups, requests or {})
    kept: Dict[int, np.ndarray] = {}
    start = time.perf_counter()
    world: Dist = getattr(ctx, "world", SINGLE)
    n_images, passes, layout = _stream(ctx, accs, kept, images_only)
    if world.enabled:
        n_images = int(sum_floats([float(n_images)], world)[0])
        for acc in accs.values():
            acc.reduce(world)
        kept = {k: v for part in gather_objects(kept, world) for k, v in part.items()}
    results = {g: acc.finish(n_images) for g, acc in accs.items()}
    if n_images == 0:
        raise ValueError(f"the data gave no images to analyse ({ctx.data.spec}).")
    return SharedStats(
        results=results,
        n_images=n_images,
        depth=layout.depth,
        grid=layout.grid,
        patch_size=layout.patch_size,
        num_prefix=layout.num_prefix,
        img_size=int(ctx.img_size),
        seconds=time.perf_counter() - start,
        kept_images=kept,
        forward_passes=passes,
    )


__all__ = [
    "Accumulator",
    "Layout",
    "SharedStats",
    "StatisticsGroup",
    "group_names",
    "register_group",
    "run_shared_pass",
]
