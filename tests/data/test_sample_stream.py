"""The deterministic sample stream behind exact resume and DDP (``maskdistill.data.pipeline``):
global batches do not depend on the number of processes, accumulation steps, the step a stream
starts at, or the number of DataLoader workers."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch.utils.data import DataLoader

from maskdistill.data.masking import make_mask_generator
from maskdistill.data.pipeline import SeededSamples, StepBatchSampler
from maskdistill.data.synthetic import ShapesTextures
from maskdistill.data.transforms import pretrain_transform

N, G, SEED = 20, 6, 3  # 3 steps per epoch (drop-last: 2 images unused per epoch)


def _global_batches(world: int, accum: int, steps: int, start: int = 0, n: int = N, g: int = G):
    """Per step: the concatenation of every rank's micro-batches, rank-major."""
    streams = [
        iter(StepBatchSampler(n, g, SEED, rank=r, world=world, accum=accum, start_step=start)) for r in range(world)
    ]
    out = []
    for _ in range(steps):
        out.append([item for s in streams for _ in range(accum) for item in next(s)])
    return out


@pytest.mark.parametrize("world, accum", [(2, 1), (3, 1), (2, 3), (1, 2)])
def test_ranks_and_micro_batches_concatenate_to_the_single_process_batch(world, accum):
    ref = _global_batches(1, 1, 8)
    assert _global_batches(world, accum, 8) == ref
    micro = next(iter(StepBatchSampler(N, G, SEED, rank=0, world=world, accum=accum)))
    assert len(micro) == G // (world * accum)


def test_each_epoch_is_a_fresh_permutation_without_repeats():
    batches = _global_batches(1, 1, 9)  # epochs 0, 1, 2
    for e in range(3):
        items = [it for b in batches[3 * e : 3 * e + 3] for it in b]
        assert {ep for _, ep in items} == {e}
        idx = [i for i, _ in items]
        assert len(idx) == len(set(idx)) == 3 * G and all(0 <= i < N for i in idx)
    firsts = [tuple(i for i, _ in batches[3 * e]) for e in range(3)]
    assert len(set(firsts)) == 3  # reshuffled every epoch


@pytest.mark.parametrize("start", [1, 3, 5, 7])
def test_starting_at_step_s_equals_skipping_s_steps(start):
    full = _global_batches(1, 1, start + 4)
    assert _global_batches(1, 1, 4, start=start) == full[start:]
    # ... also per rank with accumulation (what a resumed DDP run sees).
    assert _global_batches(3, 2, 4, start=start) == full[start:]


def test_bad_sizes_are_refused():
    with pytest.raises(ValueError, match="not divisible"):
        StepBatchSampler(N, 6, SEED, world=4)
    with pytest.raises(ValueError, match="fewer than one global batch"):
        StepBatchSampler(5, 6, SEED)


@pytest.fixture(scope="module")
def samples():
    base = ShapesTextures(num_images=12, image_size=32, seed=1)
    gen = make_mask_generator("blockwise", (4, 4), num_masked=6, min_block=2)
    return SeededSamples(base, pretrain_transform(32, 0.3, 0.4, 0.5), gen, seed=5)


def _collect(ds, workers, sampler):
    loader = DataLoader(ds, batch_sampler=sampler, num_workers=workers)
    return list(itertools.islice(loader, 4))


def test_items_do_not_depend_on_dataloader_workers(samples):
    sampler = lambda: StepBatchSampler(len(samples), 6, SEED)  # noqa: E731  (crosses an epoch)
    a, b = _collect(samples, 0, sampler()), _collect(samples, 2, sampler())
    for x, y in zip(a, b):
        assert x["image"].dtype == torch.uint8 and x["image"].shape == (6, 3, 32, 32)
        assert x["mask"].shape == (6, 4, 4) and (x["mask"].flatten(1).sum(1) == 6).all()
        for k in ("image", "mask", "label", "bad"):
            assert torch.equal(x[k], y[k]), k


def test_items_are_keyed_by_index_and_epoch(samples):
    torch.manual_seed(0)
    a = samples[(4, 0)]
    torch.manual_seed(1)  # the global RNG does not matter ...
    b = samples[(4, 0)]
    assert torch.equal(a["image"], b["image"]) and torch.equal(a["mask"], b["mask"])
    state = torch.get_rng_state()
    samples[(4, 0)]
    assert torch.equal(state, torch.get_rng_state())  # ... and is not consumed
    # Another epoch gets another augmentation and mask of the same image.
    others = [samples[(4, e)] for e in range(1, 4)]
    assert any(not torch.equal(a["image"], o["image"]) for o in others)
    assert any(not torch.equal(a["mask"], o["mask"]) for o in others)
    assert all(o["label"] == a["label"] for o in others)
