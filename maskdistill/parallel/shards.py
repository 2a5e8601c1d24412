"""The share of a set of items one rank works on: contiguous ranges, so that concatenating the
ranks' results in rank order restores the items' order (what the per-image values behind the
intervals and the decision tables need), with sizes differing by at most one."""

from __future__ import annotations

from typing import Any, List, Sequence, Tuple

from maskdistill.parallel.group import Dist


def shard_range(n: int, d: Dist) -> range:
    """Rank ``d.rank``'s contiguous share of items ``0..n-1``: the first ``n % world`` ranks take
    one item more. A rank beyond the items gets an empty range."""
    base, extra = divmod(int(n), d.world)
    start = d.rank * base + min(d.rank, extra)
    return range(start, start + base + (1 if d.rank < extra else 0))


def batch_pieces(n: int, batch_size: int, d: Dist) -> Tuple[List[List[int]], List[int], int]:
    """Items ``0..n-1`` in batches of ``batch_size``, this rank's share of them: (its pieces, the
    batch index of each, the number of batches). The rank's contiguous share is cut where the
    batches are, so a batch split between two ranks is two pieces with one index."""
    mine = shard_range(n, d)
    cuts = sorted({mine.start, mine.stop} | {b for b in range(0, n, batch_size) if b in mine})
    pieces = [list(range(a, b)) for a, b in zip(cuts, cuts[1:]) if b > a]
    return pieces, [p[0] // batch_size for p in pieces], -(-int(n) // batch_size)


class RankBatches(list):
    """This rank's batches of a measurement made by several processes (the Hessian's): ``world``
    (the process group), ``ids`` (each batch's index among the measurement's batches, shared by the
    two parts of a batch split between ranks) and ``count`` (the measurement's batches). A rank may
    hold no batch at all."""

    def __init__(self, batches: Sequence[Any], world: Dist, ids: Sequence[int], count: int) -> None:
        super().__init__(batches)
        self.world, self.ids, self.count = world, list(ids), int(count)

    def only(self, batch: int) -> "RankBatches":
        """The parts of measurement batch ``batch`` that this rank holds (maybe none)."""
        keep = [(b, i) for b, i in zip(self, self.ids) if i == batch]
        return RankBatches([b for b, _ in keep], self.world, [i for _, i in keep], 1)

    def moved(self, fn: Any) -> "RankBatches":
        """The same batches with ``fn`` applied to each (e.g. moved to a device)."""
        return RankBatches([fn(b) for b in self], self.world, self.ids, self.count)


__all__ = ["RankBatches", "batch_pieces", "shard_range"]
