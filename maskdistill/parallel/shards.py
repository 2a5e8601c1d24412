"""The share of a set of items one rank works on: contiguous ranges, so that concatenating the
ranks' results in rank order restores the items' order (what the per-image values behind the
intervals and the decision tables need), with sizes differing by at most one."""

from __future__ import annotations

from maskdistill.parallel.group import Dist


def shard_range(n: int, d: Dist) -> range:
    """Rank ``d.rank``'s contiguous share of items ``0..n-1``: the first ``n % world`` ranks take
    one item more. A rank beyond the items gets an empty range."""
    base, extra = divmod(int(n), d.world)
    start = d.rank * base + min(d.rank, extra)
    return range(start, start + base + (1 if d.rank < extra else 0))


__all__ = ["shard_range"]
