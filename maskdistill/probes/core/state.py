"""The running state of the shared pass's accumulators and its reduction across the processes of
a torchrun job: float64 running sums per layer (:class:`LayerSums`, all-reduced) and the walk over
an accumulator's state that reduces each piece (:func:`reduce_state`)."""

from __future__ import annotations

from typing import Any, Optional

import torch

from maskdistill.parallel.collectives import sum_across
from maskdistill.parallel.group import Dist


class LayerSums:
    """float64 running sums, one row per layer, allocated on the value's device at the first add."""

    def __init__(self) -> None:
        self.total: Optional[torch.Tensor] = None

    def add(self, row: int, value: torch.Tensor, rows: int) -> None:
        if self.total is None:
            self.total = torch.zeros((rows,) + tuple(value.shape), dtype=torch.float64, device=value.device)
        self.total[row] += value.to(torch.float64)

    def reduce(self, world: Dist) -> None:
        """The sums over every rank's images."""
        if self.total is not None:
            self.total = sum_across(self.total, world)

    def result(self) -> Optional[torch.Tensor]:
        """The sums on the CPU (None when nothing was added)."""
        return None if self.total is None else self.total.cpu()


def reduce_state(value: Any, world: Dist) -> None:
    """Reduce one piece of accumulator state across the ranks: anything with a ``reduce(world)``
    (running sums, per-image values, nested accumulators), inside dicts, lists and tuples; other
    values (caches, settings) are left alone. Every rank walks its state in the same order."""
    if not world.enabled:
        return
    if callable(getattr(value, "reduce", None)) and not isinstance(value, type):
        value.reduce(world)
    elif isinstance(value, dict):
        for v in value.values():
            reduce_state(v, world)
    elif isinstance(value, (list, tuple)):
        for v in value:
            reduce_state(v, world)


__all__ = ["LayerSums", "reduce_state"]
