"""What the decision probes (paper Sec. 5 and App. C: Figs. 8a, 11, 12) read from their probe context,
duck-typed so that any object with these attributes works:

- ``ctx.model``: ``model(x) -> logits (B, K)`` on images normalised with the model's mean/std;
- ``ctx.info`` (or ``ctx.model_info``): its ``ModelInfo`` (``mean, std, img_size, crop_pct,
  interpolation``; ``classes`` for maskdistill classifiers, which then decide directly);
- optional ``ctx.device`` (default cpu), ``ctx.name`` (default "model"), ``ctx.batch_size``,
  ``ctx.img_size`` (the side the patch embedding really takes) and ``ctx.meta(**extra)``;
- where the data is, unless passed as probe parameters: ``ctx.stimuli`` (a stimulus root in
  model-vs-human's layout, or ``"builtin"`` for the native cue-conflict set of the built-in data),
  else the analysis data ``ctx.data`` (a folder, or the built-in set), and ``ctx.raw_data``
  (model-vs-human's ``raw-data`` folder of human responses);
- optional ``ctx.world``: the processes sharing the analysis under torchrun (default one process);
  each evaluates its share of the stimuli and the decisions are gathered on every rank.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Tuple

import pandas as pd
import torch

from maskdistill.parallel.group import SINGLE, Dist
from maskdistill.probes.decisions.responses import read_responses, write_responses


def ctx_attr(ctx: Any, *names: str, default: Any = None) -> Any:
    """The first of ``names`` that ``ctx`` has and is not None, else ``default``."""
    for n in names:
        v = getattr(ctx, n, None)
        if v is not None:
            return v
    return default


def model_of(ctx: Any) -> Tuple[Any, Any, torch.device, str]:
    """(model in eval mode, its ModelInfo with the real input side, device, name)."""
    model = ctx_attr(ctx, "model")
    info = ctx_attr(ctx, "info", "model_info")
    if model is None or info is None:
        raise TypeError("the decision probes need ctx.model (logits) and ctx.info (ModelInfo: mean/std/img_size).")
    if hasattr(model, "eval"):
        model.eval()
    size = getattr(ctx, "img_size", None)  # ProbeContext: the side the patch embedding really takes
    if size and int(size) != int(info.img_size) and dataclasses.is_dataclass(info):
        info = dataclasses.replace(info, img_size=int(size))
    device = torch.device(ctx_attr(ctx, "device", default="cpu"))
    return model, info, device, str(ctx_attr(ctx, "name", default="model"))


def world_of(ctx: Any) -> Dist:
    """The context's process group; one process for contexts without one (duck-typed tests)."""
    return getattr(ctx, "world", SINGLE)


def batch_size_of(ctx: Any, batch_size: Optional[int]) -> int:
    return int(batch_size or ctx_attr(ctx, "batch_size", default=32))


def stimulus_root(ctx: Any, stimuli: Optional[str]) -> str:
    """The probe parameter, else ``ctx.stimuli``, else the analysis data (a folder, or ``builtin``)."""
    root = stimuli if stimuli is not None else ctx_attr(ctx, "stimuli", "stimulus_root")
    data = getattr(ctx, "data", None)
    if root is None and data is not None and getattr(data, "kind", None) in ("builtin", "folder"):
        root = "builtin" if data.kind == "builtin" else str(data.path)
    if root is None:
        raise ValueError(
            "no stimuli: pass stimuli=<folder in model-vs-human layout> (or 'builtin' for the built-in "
            "cue-conflict set), or give the probe context a .stimuli folder."
        )
    return str(root)


def human_responses(ctx: Any, raw_data: Optional[str], datasets: Sequence[str]) -> Optional[pd.DataFrame]:
    """The human response files of ``datasets`` under ``raw_data`` (else ``ctx.raw_data``); None if none."""
    root = raw_data if raw_data is not None else ctx_attr(ctx, "raw_data")
    if root is None:
        return None
    folders = [Path(root) / d for d in datasets if (Path(root) / d).is_dir()]
    return read_responses(folders) if folders else None


def result_meta(ctx: Any, **extra: Any) -> Dict[str, Any]:
    """The context's metadata with ``extra`` and the stimuli skipped as unreadable."""
    skipped = list((getattr(ctx, "memo", None) or {}).get("unreadable_stimuli", []))
    extra = dict(extra, stimuli_unreadable=skipped)
    return ctx.meta(**extra) if callable(getattr(ctx, "meta", None)) else extra


def save_responses(responses: pd.DataFrame, responses_dir: Optional[str]) -> None:
    """One model-vs-human CSV per dataset and observer in ``responses_dir`` (nothing when None)."""
    if responses_dir:
        for _, g in responses.groupby(["dataset", "subj"]):
            write_responses(g, responses_dir)


__all__ = [
    "batch_size_of",
    "ctx_attr",
    "human_responses",
    "model_of",
    "result_meta",
    "save_responses",
    "stimulus_root",
    "world_of",
]
