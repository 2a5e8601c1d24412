"""Tests for maskdistill.data.masking (the mask operator M of Eq. 1)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from maskdistill.data.masking import (
    BlockwiseMasking,
    MaskGenerator,
    NoMasking,
    RandomMasking,
    make_mask_generator,
)


def rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def mean_masked_neighbours(mask: np.ndarray) -> float:
    """Mean number of masked 4-neighbours of a masked cell (4 = interior of a block, 0 = isolated)."""
    p = np.pad(mask, 1).astype(int)
    nb = p[:-2, 1:-1] + p[2:, 1:-1] + p[1:-1, :-2] + p[1:-1, 2:]
    return float(nb[mask].mean())


def split_rects(rects):
    """Block-phase rects come first; fill cells are 1x1 and last (valid when min_block >= 4)."""
    n_block = next((i for i, r in enumerate(rects) if r[2] * r[3] == 1), len(rects))
    assert all(r[2] == r[3] == 1 for r in rects[n_block:]), "fill rects must be 1x1 and last"
    return rects[:n_block], rects[n_block:]


# ---------------------------------------------------------------- exact count
@pytest.mark.parametrize(
    "grid, num_masked, min_block",
    [
        ((14, 14), 75, 16),
        ((8, 8), 16, 4),
        ((14, 14), 0, 16),
        ((14, 14), 196, 16),
        ((8, 8), 64, 4),
        ((14, 14), 5, 16),
        ((14, 14), 20, 16),
        ((3, 5), 7, 4),
    ],
)
def test_blockwise_exact_count(grid, num_masked, min_block):
    gen = BlockwiseMasking(grid, num_masked, min_block=min_block)
    assert gen.num_masked == num_masked and gen.grid == grid
    for seed in range(60):
        mask = gen(rng(seed))
        assert mask.shape == grid and mask.dtype == np.bool_
        assert int(mask.sum()) == num_masked


def test_min_block_larger_than_budget_is_a_compact_blob():
    # No 16-cell block can add only 5 new cells to an empty mask: everything goes to the fill
    # phase, which must still produce 5 cells that form one 4-connected blob.
    gen = BlockwiseMasking((14, 14), 5, min_block=16)
    for seed in range(20):
        mask, rects = gen.generate(rng(seed))
        assert mask.sum() == 5 and len(rects) == 5 and all(r[2:] == (1, 1) for r in rects)
        assert mean_masked_neighbours(mask) >= 2 * 4 / 5  # a 5-cell tree has 4 edges


# ---------------------------------------------------------------- valid blocks
@pytest.mark.parametrize(
    "grid, num_masked, kw",
    [
        ((14, 14), 75, {}),
        ((8, 8), 16, {"min_block": 4}),
        ((14, 14), 120, {"max_block": 40}),
        ((10, 12), 50, {"min_block": 9, "min_aspect": 0.5, "max_aspect": 3.0}),
    ],
)
def test_rects_inside_grid_union_equals_mask_and_shapes_valid(grid, num_masked, kw):
    gen = BlockwiseMasking(grid, num_masked, **kw)
    H, W = grid
    lo_r, hi_r = gen.min_aspect, gen.max_aspect
    # Rounding h and w by <= 0.5 each: h*w >= A - 0.5*(sqrt(A*r) + sqrt(A/r)) + 0.25, worst at
    # the extreme aspect.
    worst = max(math.sqrt(lo_r) + 1 / math.sqrt(lo_r), math.sqrt(hi_r) + 1 / math.sqrt(hi_r))
    min_area = gen.min_block - 0.5 * math.sqrt(gen.min_block) * worst + 0.25
    big = gen.max_block
    max_area = big + 0.5 * math.sqrt(big) * worst + 0.25
    n_blocks = 0
    for seed in range(80):
        mask, rects = gen.generate(rng(seed))
        union = np.zeros(grid, dtype=bool)
        for t, l, h, w in rects:
            assert 0 <= t and 0 <= l and h >= 1 and w >= 1 and t + h <= H and l + w <= W
            union[t : t + h, l : l + w] = True
        np.testing.assert_array_equal(union, mask)
        blocks, _ = split_rects(rects)
        n_blocks += len(blocks)
        for _, _, h, w in blocks:
            assert min_area <= h * w <= max_area, (h, w, min_area, max_area)
            # some aspect r in [lo_r, hi_r] must round to (h, w): sqrt(A r) in [h-.5, h+.5] etc.
            assert (h - 0.5) / (w + 0.5) <= hi_r and (h + 0.5) / (w - 0.5) >= lo_r, (h, w)
    assert n_blocks >= 80  # the block phase really ran (at least one block per mask on average)


def test_square_aspect_gives_square_blocks():
    gen = BlockwiseMasking((14, 14), 75, min_aspect=1.0, max_aspect=1.0)
    for seed in range(30):
        blocks, _ = split_rects(gen.generate(rng(seed))[1])
        assert blocks and all(h == w and h >= 4 for _, _, h, w in blocks)  # round(sqrt(>=16))


def test_fill_phase_is_small_for_default_setting():
    gen = make_mask_generator("blockwise", (14, 14))  # 75 patches, min_block 16, aspect 0.3
    filled = [len(split_rects(gen.generate(rng(s))[1])[1]) for s in range(300)]
    # Measured ~1.2 fill cells per mask (1.6 %); bound the mean at 10 % of the 75 masked cells.
    assert np.mean(filled) < 0.1 * 75


# ---------------------------------------------------------------- blockiness
def test_blockwise_is_blockier_than_random():
    block = make_mask_generator("blockwise", (14, 14), num_masked=75)
    rand = RandomMasking((14, 14), 75 / 196)
    assert rand.num_masked == 75
    nb_block = np.mean([mean_masked_neighbours(block(rng(s))) for s in range(200)])
    nb_rand = np.mean([mean_masked_neighbours(rand(rng(s))) for s in range(200)])
    # Measured: blockwise ~3.40, random ~1.41 (expected 4 * 74/195 = 1.52 minus border effects).
    assert nb_block > 3.0 and nb_rand < 1.7
    assert nb_block - nb_rand > 1.5


# ---------------------------------------------------------------- random masking
@pytest.mark.parametrize("grid, ratio", [((14, 14), 0.4), ((7, 9), 0.75), ((4, 4), 0.0), ((4, 4), 1.0)])
def test_random_exact_count(grid, ratio):
    gen = RandomMasking(grid, ratio)
    expected = round(ratio * grid[0] * grid[1])
    assert gen.num_masked == expected
    for seed in range(30):
        mask = gen(rng(seed))
        assert mask.shape == grid and mask.dtype == np.bool_ and int(mask.sum()) == expected


def test_random_uniform_coverage():
    gen = RandomMasking((14, 14), 0.4)
    n, p = 2000, gen.num_masked / 196
    counts = np.sum([gen(rng(s)) for s in range(n)], axis=0)
    chi2 = float(np.sum((counts - n * p) ** 2 / (n * p * (1 - p))))
    # ~chi-square with ~195 dof: mean 195, sd ~20; 300 is > 5 sd out. Any per-cell bias fails it.
    assert chi2 < 300, chi2
    assert np.all(np.abs(counts / n - p) < 5 * math.sqrt(p * (1 - p) / n))


def test_no_masking():
    gen = make_mask_generator("none", (14, 14))
    assert isinstance(gen, NoMasking) and gen.num_masked == 0
    mask = gen(rng(0))
    assert mask.shape == (14, 14) and mask.dtype == np.bool_ and not mask.any()


# ---------------------------------------------------------------- determinism
@pytest.mark.parametrize("kind", ["blockwise", "random"])
def test_determinism_and_no_global_state(kind):
    gen = make_mask_generator(kind, (14, 14))
    np.random.seed(1)
    a = gen(rng(123))
    np.random.seed(2)  # global RNG state must not matter
    b = gen(rng(123))
    np.testing.assert_array_equal(a, b)
    masks = [gen(rng(s)).tobytes() for s in range(20)]
    assert len(set(masks)) == 20


def test_factory_types_and_attributes():
    b = make_mask_generator("blockwise", [14, 14], num_masked=50, min_block=8)
    r = make_mask_generator("random", (14, 14), ratio=0.4)
    assert isinstance(b, BlockwiseMasking) and isinstance(r, RandomMasking)
    assert all(isinstance(g, MaskGenerator) for g in (b, r))
    assert (b.grid, b.num_masked, b.min_block, b.max_block) == ((14, 14), 50, 8, 50)
    assert b.max_aspect == pytest.approx(1 / 0.3)
    assert r.num_masked == 78


# ---------------------------------------------------------------- errors
@pytest.mark.parametrize(
    "build, match",
    [
        (lambda: BlockwiseMasking((14, 14), 197), r"num_masked=197 must be in \[0, H\*W=196\]"),
        (lambda: BlockwiseMasking((14, 14), -1), r"num_masked=-1 must be in"),
        (lambda: RandomMasking((14, 14), 1.5), r"ratio must be in \[0, 1\]"),
        (lambda: RandomMasking((14, 14), -0.1), r"ratio must be in \[0, 1\]"),
        (lambda: BlockwiseMasking((14, 14), 75, min_aspect=0.0), r"aspect ratios must be > 0"),
        (lambda: BlockwiseMasking((14, 14), 75, min_aspect=-1.0), r"aspect ratios must be > 0"),
        (lambda: BlockwiseMasking((14, 14), 75, max_aspect=0.0), r"aspect ratios must be > 0"),
        (lambda: BlockwiseMasking((14, 14), 75, min_aspect=2.0), r"min_aspect=2.0 > max_aspect"),
        (lambda: BlockwiseMasking((14, 14), 75, max_block=8), r"max_block=8 < min_block=16"),
        (lambda: BlockwiseMasking((14, 14), 75, min_block=0), r"min_block must be >= 1"),
        (lambda: BlockwiseMasking((14, 0), 0), r"grid must be two positive ints"),
        (lambda: make_mask_generator("block", (14, 14)), r"blockwise, random, none"),
    ],
)
def test_errors(build, match):
    with pytest.raises(ValueError, match=match):
        build()
