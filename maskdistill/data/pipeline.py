"""Deterministic sample streams for training: every sample's augmentation and mask are drawn from a
seed derived from (run seed, epoch, dataset index) alone. The same global batch therefore gets the
same pixels and masks whatever the number of DataLoader workers or DDP processes, and a run resumed
at step k sees exactly the batches an uninterrupted run would (exact resume).
"""

from __future__ import annotations

import contextlib
import logging
import random
from typing import Callable, Dict, Iterator, List, Optional, Tuple

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from maskdistill.errors import RunStopped

log = logging.getLogger(__name__)


@contextlib.contextmanager
def seeded_rngs(seed: int) -> Iterator[None]:
    """Seed torch, numpy and Python's ``random`` for one sample's augmentation, then restore them:
    torchvision draws from torch's global RNG, timm's RandAugment and random erasing from
    ``random`` and numpy's global RNG."""
    py, npy = random.getstate(), np.random.get_state()
    with torch.random.fork_rng(devices=[]):
        # The CPU generator only: augmentation runs on the CPU, and torch.manual_seed would also
        # reseed every CUDA generator (not restored by fork_rng(devices=[])) and, in CUDA builds,
        # queue a lazy call with a stack trace -- a third of a sample's cost on the demo's data.
        torch.default_generator.manual_seed(seed)
        random.seed(seed)
        np.random.seed(seed % 2**32)
        try:
            yield
        finally:
            random.setstate(py)
            np.random.set_state(npy)


def sample_seed(*keys: int) -> int:
    return int(np.random.SeedSequence([int(k) for k in keys]).generate_state(1, dtype=np.uint64)[0] >> 1)


class SeededSamples(Dataset):
    """Wraps ``base[i] -> (PIL image, label)``; items are keyed by (index, epoch) and return
    ``{"image": uint8 (C, H, W), "mask": bool (h, w), "label": int, "bad": int}``.

    Unreadable images are replaced by the next readable index and counted in ``bad`` so the loop
    can warn and stop past a configured share.
    """

    def __init__(
        self, base: Dataset, transform: Callable, mask_gen: Optional[Callable], seed: int, max_tries: int = 50
    ) -> None:
        self.base, self.transform, self.mask_gen, self.seed = base, transform, mask_gen, seed
        self.max_tries = max_tries

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    def _describe(self, i: int) -> str:
        return self.base.describe(i) if hasattr(self.base, "describe") else f"index {i}"

    def __getitem__(self, key: Tuple[int, int]) -> Dict[str, object]:
        index, epoch = key
        s = sample_seed(self.seed, epoch, index)
        bad = 0
        for attempt in range(self.max_tries):
            i = (index + attempt) % len(self)
            try:
                img, label = self.base[i]
                break
            except OSError as e:  # PIL raises OSError subclasses for corrupt/truncated files
                bad += 1
                log.warning("skipping unreadable image %s (%s)", self._describe(i), e)
        else:
            raise RunStopped(
                f"{self.max_tries} consecutive unreadable images from index {index}; "
                f"check the data folder for corrupt files."
            )
        with seeded_rngs(s):
            image = self.transform(img)
        out: Dict[str, object] = {"image": image, "label": int(label), "bad": bad}
        if self.mask_gen is not None:
            out["mask"] = torch.from_numpy(np.ascontiguousarray(self.mask_gen(np.random.default_rng(s))))
        return out


class StepBatchSampler(Sampler[List[Tuple[int, int]]]):
    """Infinite stream of micro-batches of (index, epoch), starting at optimizer step ``start_step``.

    Step s uses epoch e = s // steps_per_epoch and positions [b*G, (b+1)*G) of epoch e's seeded
    permutation (G = global batch, drop-last). Process ``rank`` of ``world`` takes its contiguous
    share, split into ``accum`` micro-batches.
    """

    def __init__(
        self,
        n: int,
        global_batch: int,
        seed: int,
        rank: int = 0,
        world: int = 1,
        accum: int = 1,
        start_step: int = 0,
        shuffle: bool = True,
    ) -> None:
        if global_batch % (world * accum):
            raise ValueError(
                f"global batch {global_batch} is not divisible by processes x accumulation "
                f"steps = {world} x {accum}; pick train.batch_size accordingly."
            )
        if n < global_batch:
            raise ValueError(
                f"the data has {n} images, fewer than one global batch of {global_batch}; "
                f"lower train.batch_size or add images."
            )
        self.n, self.G, self.seed, self.rank, self.world = n, global_batch, seed, rank, world
        self.accum, self.start_step, self.shuffle = accum, start_step, shuffle
        self.steps_per_epoch = n // global_batch
        self.micro = global_batch // (world * accum)
        self._perm: Tuple[int, Optional[torch.Tensor]] = (-1, None)

    def _permutation(self, epoch: int) -> torch.Tensor:
        if self._perm[0] != epoch:
            g = torch.Generator().manual_seed(sample_seed(self.seed, epoch, 0x5EED))
            self._perm = (epoch, torch.randperm(self.n, generator=g) if self.shuffle else torch.arange(self.n))
        return self._perm[1]  # type: ignore[return-value]

    def __iter__(self) -> Iterator[List[Tuple[int, int]]]:
        step = self.start_step
        while True:
            epoch, b = divmod(step, self.steps_per_epoch)
            glob = self._permutation(epoch)[b * self.G : (b + 1) * self.G]
            local = glob[self.rank * self.micro * self.accum : (self.rank + 1) * self.micro * self.accum]
            for a in range(self.accum):
                yield [(int(i), epoch) for i in local[a * self.micro : (a + 1) * self.micro]]
            step += 1

    def __len__(self) -> int:  # DataLoader asks; the stream is open-ended
        return 2**62
