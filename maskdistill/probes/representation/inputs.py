"""How the attention and spectrum statistics (paper Secs. 3-4) read their inputs: a patch grid given
as one side L or as (rows, cols), and the precision they compute in -- float32 for half-precision or
float32 input, float64 kept -- whatever dtype the model ran in."""

from __future__ import annotations

from typing import Sequence, Tuple, Union

import torch

Grid = Union[int, Sequence[int]]


def stat_float(x: torch.Tensor) -> torch.Tensor:
    """float32 for bf16/fp16/fp32 input, float64 kept: statistics never run in half precision."""
    return x if x.dtype in (torch.float32, torch.float64) else x.float()


def as_grid(grid: Grid) -> Tuple[int, int]:
    """``L`` or ``(rows, cols)`` -> (rows, cols) of positive ints."""
    g = (int(grid), int(grid)) if isinstance(grid, int) else tuple(int(v) for v in grid)
    if len(g) != 2 or min(g) < 1:
        raise ValueError(f"grid must be an int L or a pair (rows, cols) of positive ints, got {grid!r}.")
    return g  # type: ignore[return-value]


__all__ = ["Grid", "as_grid", "stat_float"]
