"""Each rank's share of the items: contiguous, in rank order, covering every item once, sizes
within one of each other; batches cut where they are, so a batch split between ranks keeps its
index."""

from __future__ import annotations

import pytest

from maskdistill.parallel.group import Dist
from maskdistill.parallel.shards import RankBatches, batch_pieces, shard_range


@pytest.mark.parametrize("n,world", [(10, 1), (10, 2), (10, 3), (7, 4), (3, 5), (0, 2), (50000, 8)])
def test_shares_cover_every_item_once_in_order(n, world):
    shares = [shard_range(n, Dist(r, world)) for r in range(world)]
    assert [i for s in shares for i in s] == list(range(n))
    sizes = [len(s) for s in shares]
    assert max(sizes) - min(sizes) <= 1
    assert sizes == sorted(sizes, reverse=True)  # the first ranks take the extra items


def test_batch_pieces_cut_at_batch_boundaries():
    # 14 items in batches of 5 over 2 ranks: rank 0 holds 0-6, rank 1 holds 7-13
    p0, ids0, count0 = batch_pieces(14, 5, Dist(0, 2))
    p1, ids1, count1 = batch_pieces(14, 5, Dist(1, 2))
    assert p0 == [[0, 1, 2, 3, 4], [5, 6]] and ids0 == [0, 1]
    assert p1 == [[7, 8, 9], [10, 11, 12, 13]] and ids1 == [1, 2]
    assert count0 == count1 == 3
    merged = {}
    for pieces, ids in ((p0, ids0), (p1, ids1)):
        for piece, i in zip(pieces, ids):
            merged.setdefault(i, []).extend(piece)
    assert merged == {0: [0, 1, 2, 3, 4], 1: [5, 6, 7, 8, 9], 2: [10, 11, 12, 13]}


def test_one_process_batches_are_the_plain_batches():
    pieces, ids, count = batch_pieces(11, 4, Dist())
    assert pieces == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10]] and ids == [0, 1, 2] and count == 3


def test_rank_batches_select_one_measurement_batch():
    rb = RankBatches(["a", "b", "c"], Dist(1, 2), [1, 1, 2], 3)
    only = rb.only(1)
    assert list(only) == ["a", "b"] and only.ids == [1, 1] and only.world == Dist(1, 2)
    assert list(rb.only(0)) == []
    assert list(rb.moved(str.upper)) == ["A", "B", "C"] and rb.moved(str.upper).count == 3
