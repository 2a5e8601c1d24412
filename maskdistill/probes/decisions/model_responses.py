"""A model's decisions on the out-of-distribution stimulus sets as one model-vs-human response table
(paper App. C, Figs. 11, 12): the sets found under a stimulus root are evaluated as they are; the
parametric sets not on disk are made from a folder of clean 16-class images with every published
condition (``maskdistill.data.distortions``, at the model's input resolution, one generator seeded by
``seed`` per set). The table is memoised in the context, so ``ood_accuracy`` and
``error_consistency`` share one evaluation.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

import pandas as pd
import torch

from maskdistill.probes.decisions.context_reads import batch_size_of, model_of, stimulus_root
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


def _distortion(dataset: str, condition: str, gen: torch.Generator, target: Optional[torch.Tensor]) -> Callable:
    """One condition of a parametric set, applied on the CPU (the generator lives there)."""
    from maskdistill.data.distortions import apply_condition

    return lambda x: apply_condition(dataset, x.cpu(), condition, gen, target).to(x.device)


def _parametric(
    model: Any, info: Any, base: StimulusSet, dataset: str, name: str, device: torch.device, bs: int, seed: int
) -> List[pd.DataFrame]:
    """The responses on every condition of a parametric set made from the clean images ``base``."""
    from maskdistill.data.distortions import CONDITIONS, mean_amplitude_spectrum

    gen = torch.Generator().manual_seed(seed)
    target = None
    if dataset == "power-equalisation":
        tf = input_transform(int(info.img_size), float(info.crop_pct or 1.0), str(info.interpolation))
        target = mean_amplitude_spectrum(torch.stack([tf(base.load(i)) for i in range(len(base))]).float() / 255)
    return [
        evaluate_stimuli(
            model, info, base, name, device, bs, distort=_distortion(dataset, cond, gen, target), condition=cond
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
            st = read_stimuli(sets[ds], ds).subset(max_per_class)
            _note_unreadable(ctx, st)
            frames.append(evaluate_stimuli(model, info, st, name, device, bs))
        elif ds in CONDITIONS and base_images:
            base = read_stimuli(base_images, ds).subset(max_per_class)
            _note_unreadable(ctx, base)
            frames += _parametric(model, info, base, ds, name, device, bs, req.seed)
        else:
            raise ValueError(
                f"no stimuli for dataset {ds!r} under {root}"
                + ("" if base_images else " (parametric sets need base_images=<folder of clean 16-class images>)")
                + "."
            )
    if not frames:
        raise ValueError(f"no stimulus sets to evaluate under {root}.")
    return pd.concat(frames, ignore_index=True)


__all__ = ["ResponseRequest", "model_responses", "root_or_none"]
