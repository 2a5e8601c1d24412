"""Unreadable images in an analysis, treated as in training (``pipeline.py``): skipped, counted and
capped. An analysis reads a fixed subset of a folder once per pass and per model, so the images are
checked once, up front: every chosen file is decoded (which catches truncated files as well as
unknown formats and empty files), an unreadable one is replaced by the next image of the seeded
order, and the list of skipped files goes into every result's metadata, ``analyze.json`` and the
report. More than ``max_share`` of the images examined being unreadable stops the analysis. Under
torchrun each process decodes its share of the chosen files and the verdicts are gathered, so a
50,000-image check costs each of N processes 1/N of it and all agree on the subset."""

from __future__ import annotations

import logging
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, List, Optional, Sequence, Tuple, TypeVar

from PIL import Image
from torch.utils.data import Dataset, Subset

from maskdistill.errors import RunStopped
from maskdistill.parallel.collectives import gather_objects
from maskdistill.parallel.group import SINGLE, Dist
from maskdistill.parallel.shards import shard_range

log = logging.getLogger(__name__)

DEFAULT_MAX_SHARE = 0.05
T = TypeVar("T")


def unreadable_reason(path: str | Path) -> Optional[str]:
    """None when PIL decodes ``path`` whole, else why it cannot (the exception's type and text)."""
    try:
        with Image.open(path) as im:
            im.load()
    except (OSError, SyntaxError, ValueError) as e:  # PIL's errors for unknown, corrupt or truncated files
        return f"{type(e).__name__}: {e}"
    return None


def _scan(paths: Sequence[str | Path], pool: ThreadPoolExecutor, world: Dist = SINGLE) -> List[Optional[str]]:
    """Why each file is unreadable (None: it decodes), this process decoding its contiguous share;
    each unreadable one is logged by the process that found it."""
    mine = shard_range(len(paths), world)
    found = list(pool.map(unreadable_reason, [paths[i] for i in mine]))  # PIL decodes without the GIL
    for path, why in zip([paths[i] for i in mine], found):
        if why is not None:
            log.warning("skipping unreadable image %s (%s)", path, why)
    return [why for part in gather_objects(found, world) for why in part]


class ReadableSubset(Subset):
    """A ``Subset`` of readable images; ``unreadable``: the files skipped to make it."""

    def __init__(self, dataset: Dataset, indices: Sequence[int], unreadable: List[str]) -> None:
        super().__init__(dataset, list(indices))
        self.unreadable = unreadable


def readable_subset(
    folder: Dataset, order: Sequence[int], n: int, max_share: float = DEFAULT_MAX_SHARE, world: Dist = SINGLE
) -> Subset:
    """The first ``n`` readable images of ``folder`` (an ``ImageFolder``: ``samples[i] = (path,
    label)``) in ``order``; raises :class:`~maskdistill.errors.RunStopped` past ``max_share``.
    ``world``: the processes that share the check (every one gets the same subset)."""
    keep: List[int] = []
    bad: List[str] = []
    pos = 0
    with ThreadPoolExecutor(min(8, os.cpu_count() or 1)) as pool:
        while len(keep) < n and pos < len(order):
            chunk = [int(i) for i in order[pos : pos + n - len(keep)]]
            pos += len(chunk)
            paths = [folder.samples[i][0] for i in chunk]  # type: ignore[attr-defined]
            reasons = _scan(paths, pool, world)
            keep += [i for i, why in zip(chunk, reasons) if why is None]
            bad += [str(p) for p, why in zip(paths, reasons) if why is not None]
    check_share(bad, len(keep) + len(bad), max_share)
    return ReadableSubset(folder, keep, bad)


def check_share(bad: Sequence[str], examined: int, max_share: float) -> None:
    """Stop when no image is readable or more than ``max_share`` of those examined are not."""
    if examined and (len(bad) == examined or len(bad) > max_share * examined):
        raise RunStopped(
            f"{len(bad)} unreadable images among {examined} examined (more than the maximum share "
            f"{max_share}), e.g. {', '.join(bad[:3])}; remove or fix them (the log names each), or allow "
            f"more with --max-unreadable-share."
        )
    if bad:
        log.warning("skipped %d unreadable image(s) of %d examined", len(bad), examined)


def drop_unreadable(
    items: Sequence[T], path_of: Callable[[T], str | Path], max_share: float = DEFAULT_MAX_SHARE, world: Dist = SINGLE
) -> Tuple[List[T], List[str]]:
    """(the items whose image decodes, the paths of those that do not), e.g. a stimulus set's;
    ``world``: the processes that share the check."""
    paths = [path_of(it) for it in items]
    with ThreadPoolExecutor(min(8, os.cpu_count() or 1)) as pool:
        reasons = _scan(paths, pool, world)
    bad = [str(p) for p, why in zip(paths, reasons) if why is not None]
    check_share(bad, len(items), max_share)
    return [it for it, why in zip(items, reasons) if why is None], bad


__all__ = [
    "check_share",
    "drop_unreadable",
    "DEFAULT_MAX_SHARE",
    "ReadableSubset",
    "readable_subset",
    "unreadable_reason",
]
