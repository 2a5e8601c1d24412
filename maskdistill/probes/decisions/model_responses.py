"""A model's decisions on the out-of-distribution stimulus sets as one model-vs-human response table
(paper App. C, Figs. 11, 12): the sets found under a stimulus root are evaluated as they are; the
parametric sets not on disk are made from a folder of clean 16-class images with every published
condition (``maskdistill.data.distortions``, at the model's input resolution, the random ones drawn
per item from a generator seeded by the seed, set, condition and item). The table is memoised in
the context, so ``ood_accuracy`` and ``error_consistency`` share one evaluation.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

import pandas as pd
import torch

from maskdistill.parallel.collectives import sum_across
from maskdistill.parallel.group import Dist
from maskdistill.parallel.shards import shard_range
from maskdistill.probes.decisions.context_reads import batch_size_of, model_of, stimulus_root, world_of
from maskdistill.probes.decisions.evaluate import evaluate_stimuli, input_transform
from maskdistill.probes.decisions.stimuli import PARAMETRIC, StimulusSet, find_stimulus_sets, read_stimuli


@dataclass(frozen=True)
class ResponseRequest:
    """Which responses to collect: the stimulus root (None: the context's), the datasets (None: every
    set found, plus the parametric ones made from ``base_images``), a folder of clean
    ``<category>/<image>`` pictures for the parametric sets, the batch size, the first
    ``max_per_class`` stimuli of every category and condition, the seed of the distortions."""

    stimuli: Optional[str] = None
    datasets: Optional[Sequence[str]] = None
    base_images: Optional[str] = None
    batch_size: Optional[int] = None
    max_per_class: Optional[int] = None
    seed: int = 0


def model_responses(ctx: Any, req: ResponseRequest) -> pd.DataFrame:
    """The model's response table on every requested set under the stimulus root; parametric sets not on
    disk are made from ``req.base_images`` with every published condition."""
    memo = getattr(ctx, "memo", None)
    datasets = req.datasets
    key = (
        f"decisions:{root_or_none(ctx, req.stimuli, req.base_images)}:{datasets and sorted(datasets)}:"
        f"{req.base_images}:{req.max_per_class}:{req.seed}"
    )
    if isinstance(memo, dict) and key in memo:  # ood_accuracy and error_consistency share one evaluation
        return memo[key]
    out = _evaluate(ctx, req)
    if isinstance(memo, dict):
        memo[key] = out
    return out


def root_or_none(ctx: Any, stimuli: Optional[str], base_images: Optional[str]) -> Optional[str]:
    """The stimulus root; none is needed when every set is made from ``base_images``."""
    try:
        return stimulus_root(ctx, stimuli)
    except ValueError:
        if base_images:
            return None
        raise


def _stimulus_sets(root: Optional[str], strict: bool, base_images: Optional[str]) -> Dict[str, Path]:
    if root is None or root == "builtin":
        return {}
    try:
        return find_stimulus_sets(root, strict=strict)
    except ValueError:
        if base_images and not strict:  # e.g. the analysis data folder: the parametric sets come from base_images
            return {}
        raise


def item_generator(seed: int, dataset: str, condition: str, item: int) -> torch.Generator:
    """The generator of one item's distortion, seeded by (seed, set, condition, item) alone: the draws
    do not depend on the batches the items are cut into, nor on which rank of a data-parallel
    analysis evaluates the item, so any number of processes makes the same distorted images."""
    key = f"{int(seed)}:{dataset}:{condition}:{int(item)}".encode()
    return torch.Generator().manual_seed(int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "little") >> 1)


def _distortion(dataset: str, condition: str, seed: int, target: Optional[torch.Tensor]) -> Callable:
    """One condition of a parametric set, applied item by item on the CPU (where the generators live)."""
    from maskdistill.data.distortions import apply_condition

    def distort(x: torch.Tensor, items: Sequence[int]) -> torch.Tensor:
        parts = [
            apply_condition(dataset, x[j : j + 1].cpu(), condition, item_generator(seed, dataset, condition, i), target)
            for j, i in enumerate(items)
        ]
        return torch.cat(parts).to(x.device)

    return distort


def _target_spectrum(base: StimulusSet, info: Any, world: Dist) -> torch.Tensor:
    """The power-equalisation target: the mean amplitude spectrum (float64) of the clean images, each
    rank decoding only its share and the sums added across the ranks (equal to the one-process mean
    up to the order of the float64 additions)."""
    from maskdistill.data.distortions import amplitude_spectrum

    tf = input_transform(int(info.img_size), float(info.crop_pct or 1.0), str(info.interpolation))
    side = int(info.img_size)
    total = torch.zeros(side, side, dtype=torch.float64)
    mine = shard_range(len(base), world)
    for start in range(mine.start, mine.stop, 32):  # a few images at a time: the spectra are float64
        x = torch.stack([tf(base.load(i)) for i in range(start, min(start + 32, mine.stop))]).float() / 255
        total += amplitude_spectrum(x).sum(dim=0)
    return sum_across(total, world) / max(len(base), 1)


def _parametric(
    model: Any,
    info: Any,
    base: StimulusSet,
    dataset: str,
    name: str,
    device: torch.device,
    bs: int,
    seed: int,
    world: Dist,
) -> List[pd.DataFrame]:
    """The responses on every condition of a parametric set made from the clean images ``base``."""
    from maskdistill.data.distortions import CONDITIONS

    target = _target_spectrum(base, info, world) if dataset == "power-equalisation" else None
    return [
        evaluate_stimuli(
            model,
            info,
            base,
            name,
            device,
            bs,
            distort=_distortion(dataset, cond, seed, target),
            condition=cond,
            world=world,
        )
        for cond in CONDITIONS[dataset]
    ]


def _note_unreadable(ctx: Any, st: StimulusSet) -> None:
    """Stimuli skipped as unreadable go into the results' metadata and analyze.json."""
    memo = getattr(ctx, "memo", None)
    if isinstance(memo, dict):
        known = memo.setdefault("unreadable_stimuli", [])
        known += [p for p in st.unreadable if p not in known]


def _evaluate(ctx: Any, req: ResponseRequest) -> pd.DataFrame:
    from maskdistill.data.distortions import CONDITIONS

    stimuli, datasets, base_images, max_per_class = req.stimuli, req.datasets, req.base_images, req.max_per_class
    model, info, device, name = model_of(ctx)
    bs = batch_size_of(ctx, req.batch_size)
    root = root_or_none(ctx, stimuli, base_images)
    sets = _stimulus_sets(root, not datasets, base_images)  # named datasets: other folders do not matter
    wanted = (
        list(datasets) if datasets else sorted(sets) + ([d for d in PARAMETRIC if d not in sets] if base_images else [])
    )
    frames = []
    for ds in wanted:
        if ds in sets:
            st = read_stimuli(sets[ds], ds, world=world_of(ctx)).subset(max_per_class)
            _note_unreadable(ctx, st)
            frames.append(evaluate_stimuli(model, info, st, name, device, bs, world=world_of(ctx)))
        elif ds in CONDITIONS and base_images:
            base = read_stimuli(base_images, ds, world=world_of(ctx)).subset(max_per_class)
            _note_unreadable(ctx, base)
            frames += _parametric(model, info, base, ds, name, device, bs, req.seed, world_of(ctx))
        else:
            raise ValueError(
                f"no stimuli for dataset {ds!r} under {root}"
                + ("" if base_images else " (parametric sets need base_images=<folder of clean 16-class images>)")
                + "."
            )
    if not frames:
        raise ValueError(f"no stimulus sets to evaluate under {root}.")
    return pd.concat(frames, ignore_index=True)


__all__ = ["ResponseRequest", "item_generator", "model_responses", "root_or_none"]
