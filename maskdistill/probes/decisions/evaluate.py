"""Run a classifier on a stimulus set and record its decisions as a model-vs-human response table
(paper App. C, Figs. 8a, 11, 12).

Pipeline per batch: PIL image -> resize the short side to ``img_size / crop_pct`` and centre-crop
``img_size`` (the model's own eval transform, ``ModelInfo``) -> float in [0, 1] -> optional distortion
(a parametric OOD condition, applied at the model's input resolution) -> normalise with the model's
mean/std -> logits -> decision mapping (16-class ImageNet or direct, chosen from the first batch's
number of outputs) -> arg-max. Decisions stay on the device until the end (no per-batch sync), so
recording costs next to nothing beside the forward pass (``benchmarks/decisions.py``).

Under torchrun every rank decodes and runs only its contiguous share of the items, cut where the
one-process batches are (``batch_pieces``), and the decisions are gathered in item order, so every
rank holds the table that one process makes.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import pandas as pd
import torch
from torchvision import transforms as T
from torchvision.transforms import InterpolationMode

from maskdistill.parallel.collectives import gather_objects
from maskdistill.parallel.group import SINGLE, Dist
from maskdistill.parallel.shards import batch_pieces
from maskdistill.probes.decisions.imagenet16 import DecisionMapping, decision_mapping_for
from maskdistill.probes.decisions.responses import make_responses

# (B, C, H, W) in [0, 1] and the B items' indices in the stimulus set -> same; the indices let a
# random distortion draw per item, whatever batch or rank the item lands in
Distort = Callable[[torch.Tensor, Sequence[int]], torch.Tensor]


def input_transform(img_size: int, crop_pct: float = 1.0, interpolation: str = "bicubic") -> Callable:
    """PIL -> uint8 (3, img_size, img_size): resize the short side to img_size / crop_pct, centre-crop."""
    mode = {"bilinear": InterpolationMode.BILINEAR, "nearest": InterpolationMode.NEAREST}.get(
        interpolation, InterpolationMode.BICUBIC
    )
    return T.Compose(
        [T.Resize(int(round(img_size / crop_pct)), interpolation=mode), T.CenterCrop(img_size), T.PILToTensor()]
    )


class DecisionRecorder:
    """Collects decisions batch by batch; the mapping is resolved from the first logits' width."""

    def __init__(
        self,
        classes: Sequence[str],
        model_classes: Sequence[str] = (),
        aliases: Sequence[Sequence[str]] = (),
        mapping: Optional[DecisionMapping] = None,
    ) -> None:
        self.classes, self.model_classes, self.aliases = list(classes), list(model_classes), list(aliases)
        self.mapping = mapping
        self._chunks: List[torch.Tensor] = []

    def add(self, logits: torch.Tensor) -> None:
        if self.mapping is None:
            self.mapping = decision_mapping_for(int(logits.shape[1]), self.model_classes, self.classes, self.aliases)
        self._chunks.append(self.mapping.decide(logits))  # (B,), stays on the device

    def decisions(self) -> List[str]:
        if not self._chunks or self.mapping is None:
            raise RuntimeError("no decisions recorded.")
        idx = torch.cat(self._chunks).cpu().numpy()
        names = np.asarray(self.mapping.classes, dtype=object)
        return list(names[idx])

    def gathered(self, world: Dist) -> Tuple[List[str], Dict[str, Any]]:
        """Every rank's decisions in rank order (item order for contiguous shares) and the decision
        mapping's metadata, on every rank; a rank that saw no item adds none (and no mapping)."""
        mine = (self.decisions(), dict(self.mapping.meta)) if self._chunks and self.mapping else ([], None)
        parts = gather_objects(mine, world)
        decisions = [d for part, _ in parts for d in part]
        if not decisions:
            raise RuntimeError("no decisions recorded.")
        return decisions, next(meta for _, meta in parts if meta is not None)


def _normaliser(mean: Sequence[float], std: Sequence[float], device: torch.device) -> Callable:
    m = torch.tensor(list(mean), device=device, dtype=torch.float32).view(1, -1, 1, 1)
    s = torch.tensor(list(std), device=device, dtype=torch.float32).view(1, -1, 1, 1)
    return lambda x: (x - m) / s


@torch.inference_mode()
def evaluate_stimuli(
    model: Callable[[torch.Tensor], torch.Tensor],
    info: Any,
    stimuli: Any,
    subj: str,
    device: str | torch.device = "cpu",
    batch_size: int = 32,
    distort: Optional[Distort] = None,
    condition: Optional[str] = None,
    mapping: Optional[DecisionMapping] = None,
    world: Dist = SINGLE,
) -> pd.DataFrame:
    """Decisions of ``model`` on every item of ``stimuli`` as a response table (one row per trial).

    ``info``: the model's ``ModelInfo`` (mean, std, img_size, crop_pct, interpolation, classes).
    ``stimuli``: a :class:`~maskdistill.probes.decisions.stimuli.StimulusSet` or
    :class:`~maskdistill.data.builtin_conflict.BuiltinCueConflict` (``load(i)``, ``classes``, per-item
    categories and image ids). ``condition`` overrides the items' own condition (distorted copies).
    ``batch_size=1`` for models that take one image at a time (e.g. some TorchScript exports).
    ``world``: the processes sharing the evaluation; each runs its share, all return the whole table."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
    device = torch.device(device)
    tf = input_transform(
        int(info.img_size), float(getattr(info, "crop_pct", 1.0) or 1.0), str(getattr(info, "interpolation", "bicubic"))
    )
    norm = _normaliser(info.mean, info.std, device)
    if hasattr(stimuli, "stimuli"):
        cats = [s.category for s in stimuli.stimuli]
        conds = [s.condition for s in stimuli.stimuli]
        ids = [s.image_id for s in stimuli.stimuli]
    else:
        cats, ids = list(stimuli.categories), list(stimuli.image_ids)
        conds = ["0"] * len(cats)
    if condition is not None:
        conds = [str(condition)] * len(cats)
    rec = DecisionRecorder(
        stimuli.classes, list(getattr(info, "classes", []) or []), getattr(stimuli, "aliases", ()), mapping
    )
    for idx in batch_pieces(len(stimuli), batch_size, world)[0]:  # this rank's share, in item order
        x = torch.stack([tf(stimuli.load(i)) for i in idx]).to(device).float().div_(255.0)  # (B, 3, H, W)
        if distort is not None:
            x = distort(x, idx)
        if x.shape[1] == 3 and len(info.mean) == 1:  # 1-channel models see the luminance
            x = x.mean(dim=1, keepdim=True)
        rec.add(model(norm(x)))
    dataset = getattr(stimuli, "dataset", "stimuli")
    decisions, meta = rec.gathered(world)
    out = make_responses(subj, dataset, cats, conds, ids, decisions)
    out.attrs["decision_mapping"] = meta
    return out


__all__ = ["DecisionRecorder", "evaluate_stimuli", "input_transform"]
