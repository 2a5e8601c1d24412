"""Mask generators: the operator M of the paper's Eq. 1.

Masked distillation trains the student on a corrupted input and matches the teacher only where it
matters: ``M_in`` picks the patches hidden from the student, ``M_out`` the patches where the loss
counts. Both are boolean masks over the patch grid ``(H, W)`` with ``True`` = masked.

* :class:`BlockwiseMasking` -- BEiT's blockwise masking (rectangles of random area and aspect),
  changed to always mask *exactly* ``num_masked`` patches (BEiT may stop short).
* :class:`RandomMasking` -- uniform random patches (MAE-style).
* :class:`NoMasking` -- nothing masked: plain feature distillation (FD).

Every generator draws only from the ``np.random.Generator`` it is given, never from global state,
so a caller that seeds one generator per sample gets masks independent of DataLoader workers.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Sequence
from typing import Any

import numpy as np

Rect = tuple[int, int, int, int]  # (top, left, h, w)
MASK_KINDS = ("blockwise", "random", "none")


def _check_grid(grid: Sequence[int]) -> tuple[int, int]:
    if len(grid) != 2 or any(int(g) != g or g < 1 for g in grid):
        raise ValueError(f"grid must be two positive ints (H, W) of patches, got {grid!r}")
    return int(grid[0]), int(grid[1])


class MaskGenerator:
    """Base class: ``gen(rng)`` -> bool array of shape ``grid`` with exactly ``num_masked`` True."""

    grid: tuple[int, int]
    num_masked: int

    def __call__(self, rng: np.random.Generator) -> np.ndarray:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(grid={self.grid}, num_masked={self.num_masked})"


class NoMasking(MaskGenerator):
    """All-False mask (plain feature distillation). ``rng`` is accepted for a uniform interface."""

    def __init__(self, grid: Sequence[int]) -> None:
        self.grid = _check_grid(grid)
        self.num_masked = 0

    def __call__(self, rng: np.random.Generator) -> np.ndarray:
        return np.zeros(self.grid, dtype=bool)


class RandomMasking(MaskGenerator):
    """Exactly ``round(ratio * H * W)`` patches chosen uniformly without replacement."""

    def __init__(self, grid: Sequence[int], ratio: float) -> None:
        self.grid = _check_grid(grid)
        if not 0.0 <= ratio <= 1.0:
            raise ValueError(f"mask ratio must be in [0, 1], got {ratio}; e.g. ratio=0.4 masks 40 %")
        self.ratio = float(ratio)
        self.num_masked = int(round(ratio * self.grid[0] * self.grid[1]))

    def __call__(self, rng: np.random.Generator) -> np.ndarray:
        h, w = self.grid
        mask = np.zeros(h * w, dtype=bool)
        mask[rng.choice(h * w, size=self.num_masked, replace=False)] = True
        return mask.reshape(h, w)


class BlockwiseMasking(MaskGenerator):
    """BEiT blockwise masking with an exact masked count.

    Block phase (BEiT): draw area ~ U[min_block, min(max_block, remaining)] and log-aspect
    ~ U[log min_aspect, log max_aspect]; h = round(sqrt(area*aspect)), w = round(sqrt(area/aspect));
    place it uniformly if it fits, accepting it only if it masks 0 < new <= remaining cells (blocks
    may overlap earlier ones, which is how small remainders still get block-shaped).
    Fill phase (ours): when ``attempts`` draws in a row fail, mask the rest one cell at a time,
    each time an unmasked cell with the most masked 4-neighbours, so masks stay compact.
    """

    def __init__(
        self,
        grid: Sequence[int],
        num_masked: int,
        min_block: int = 16,
        max_block: int | None = None,
        min_aspect: float = 0.3,
        max_aspect: float | None = None,
        attempts: int = 10,
    ) -> None:
        self.grid = _check_grid(grid)
        n_cells = self.grid[0] * self.grid[1]
        num_masked = operator.index(num_masked)
        if not 0 <= num_masked <= n_cells:
            raise ValueError(
                f"num_masked={num_masked} must be in [0, H*W={n_cells}] for grid "
                f"{self.grid}; lower it (75 of 196 is BEiT's default for 14x14)"
            )
        if min_block < 1:
            raise ValueError(f"min_block must be >= 1, got {min_block}")
        # BEiT's default cap is the whole budget; a cap below min_block could never be met.
        max_block = max(num_masked, min_block) if max_block is None else max_block
        if max_block < min_block:
            raise ValueError(f"max_block={max_block} < min_block={min_block}; raise max_block")
        max_aspect = 1.0 / min_aspect if max_aspect is None and min_aspect > 0 else max_aspect
        if min_aspect <= 0 or max_aspect is None or max_aspect <= 0:
            raise ValueError(
                f"aspect ratios must be > 0, got min_aspect={min_aspect}, "
                f"max_aspect={max_aspect}; BEiT uses 0.3 and 1/0.3"
            )
        if min_aspect > max_aspect:
            raise ValueError(
                f"min_aspect={min_aspect} > max_aspect={max_aspect} (max_aspect defaults "
                f"to 1/min_aspect); pass min_aspect <= 1 or an explicit larger max"
            )
        self.num_masked, self.min_block, self.max_block = num_masked, int(min_block), int(max_block)
        self.min_aspect, self.max_aspect = float(min_aspect), float(max_aspect)
        self.attempts = int(attempts)
        self._log_aspect = (math.log(min_aspect), math.log(max_aspect))

    def __call__(self, rng: np.random.Generator) -> np.ndarray:
        return self.generate(rng)[0]

    def generate(self, rng: np.random.Generator) -> tuple[np.ndarray, list[Rect]]:
        """Return the mask and the rectangles (top, left, h, w) placed, in order: block-phase
        blocks first, then the fill cells, each 1x1. Their union is the mask."""
        H, W = self.grid
        mask = np.zeros((H, W), dtype=bool)
        rects: list[Rect] = []
        count = 0
        while count < self.num_masked:
            rect = self._place_block(mask, self.num_masked - count, rng)
            if rect is None:
                break  # stalled: the remainder goes to the fill phase
            t, l, h, w = rect
            count += h * w - int(mask[t : t + h, l : l + w].sum())
            mask[t : t + h, l : l + w] = True
            rects.append(rect)
        if count < self.num_masked:
            rects += self._fill(mask, self.num_masked - count, rng)
        return mask, rects

    def _place_block(self, mask: np.ndarray, remaining: int, rng: np.random.Generator) -> Rect | None:
        H, W = self.grid
        k = self.attempts
        # Draw every attempt's randomness in four vectorised calls: per-scalar rng calls dominate.
        # Below min_block the upper bound is lifted to min_block: the block then has to overlap
        # the existing mask to add <= remaining cells, as in BEiT's remainder rule.
        hi = max(self.min_block, min(self.max_block, remaining))
        area = rng.uniform(self.min_block, hi, size=k)
        aspect = np.exp(rng.uniform(*self._log_aspect, size=k))
        hs = np.rint(np.sqrt(area * aspect)).astype(int)
        ws = np.rint(np.sqrt(area / aspect)).astype(int)
        pos = rng.random((k, 2))
        for i in range(k):
            h, w = int(hs[i]), int(ws[i])
            if not (1 <= h <= H and 1 <= w <= W):
                continue
            t, l = int(pos[i, 0] * (H - h + 1)), int(pos[i, 1] * (W - w + 1))
            new = h * w - int(mask[t : t + h, l : l + w].sum())
            if 0 < new <= remaining:
                return t, l, h, w
        return None

    @staticmethod
    def _fill(mask: np.ndarray, remaining: int, rng: np.random.Generator) -> list[Rect]:
        rects: list[Rect] = []
        for _ in range(remaining):
            # Masked 4-neighbour count of every cell; choosing among the best-connected unmasked
            # cells fills notches first, so the remainder extends blocks instead of speckling.
            p = np.pad(mask, 1).astype(np.int8)
            nb = p[:-2, 1:-1] + p[2:, 1:-1] + p[1:-1, :-2] + p[1:-1, 2:]
            nb[mask] = -1
            cand = np.flatnonzero(nb == nb.max())
            t, l = divmod(int(cand[rng.integers(len(cand))]), mask.shape[1])
            mask[t, l] = True
            rects.append((t, l, 1, 1))
        return rects


def make_mask_generator(kind: str, grid: Sequence[int], *, ratio: float = 0.4, **blockwise: Any) -> MaskGenerator:
    """Build a generator by name: ``blockwise`` takes :class:`BlockwiseMasking`'s options
    (``num_masked``, default 75: BEiT's 40 % of 196; ``min_block``, ``max_block``, ``min_aspect``,
    ``max_aspect``), ``random`` takes ``ratio``, ``none`` neither."""
    if kind == "blockwise":
        return BlockwiseMasking(grid, **{"num_masked": 75, **blockwise})
    if kind == "random":
        return RandomMasking(grid, ratio)
    if kind == "none":
        return NoMasking(grid)
    raise ValueError(f"unknown mask kind {kind!r}; choose one of {', '.join(MASK_KINDS)}")
