"""The reductions and gathers through which the processes of a job agree. Every function is a
no-op (or returns its input) for one process, and every rank must call it in the same order with
tensors of the same dtype: each is one collective of the process group."""

from __future__ import annotations

from typing import Any, List, Optional

import numpy as np
import torch
import torch.distributed as dist

from maskdistill.parallel.group import Dist


def sum_across(x: torch.Tensor, d: Dist) -> torch.Tensor:
    """The sum of ``x`` over the ranks (a new tensor; ``x`` is left as it is)."""
    if d.enabled:
        x = x.detach().clone()
        dist.all_reduce(x)
    return x


def sum_floats(values: List[float], d: Dist) -> List[float]:
    """Python floats summed over the ranks in float64 (one collective for the whole list)."""
    if not d.enabled or not values:
        return list(values)
    return sum_across(torch.tensor(values, dtype=torch.float64), d).tolist()


def gather_objects(obj: Any, d: Dist) -> List[Any]:
    """Every rank's ``obj`` (picklable), in rank order, on every rank."""
    if not d.enabled:
        return [obj]
    out: List[Any] = [None] * d.world
    dist.all_gather_object(out, obj)
    return out


def gather_rows(a: Optional[np.ndarray], d: Dist) -> Optional[np.ndarray]:
    """Each rank's rows (its share of the items, in item order) concatenated in rank order on every
    rank: with contiguous shares (shards.py) the result is in the items' global order. ``None`` on
    a rank that saw no item; ``None`` when no rank has rows. Arrays are few floats per item, so one
    object gather is cheap next to the pass that made them."""
    if not d.enabled:
        return a
    parts = [p for p in gather_objects(a, d) if p is not None and len(p)]
    return np.concatenate(parts) if parts else None


__all__ = ["gather_objects", "gather_rows", "sum_across", "sum_floats"]
