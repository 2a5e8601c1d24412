"""The analysis data's labels mapped onto a classifier's outputs by name (paper Secs. 4-5: the loss,
Hessian, landscape and decision numbers of a classifier only mean something against the classes its
head was trained on).

A data class (a class folder's name, a built-in set's shape or texture class) is mapped to the head
output of the same name (:class:`~maskdistill.models.label_names.HeadNames`: a checkpoint's recorded
classes, or timm's ImageNet WordNet ids and unambiguous words). A class the head does not name is
refused with the fix. A head without names is accepted only with ``labels=folder-order``: the user
states that class folder ``k`` (in sorted order) is output ``k``; results then say so.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence

import torch

from maskdistill.data.synthetic import SHAPES, TEXTURES
from maskdistill.models.label_names import HeadNames

BY_NAME = "by name"
FOLDER_ORDER = "folder-order (explicit)"
LABEL_MODES = ("by-name", "folder-order")
LABELS_HELP = "--labels folder-order (or --param labels=folder-order)"


class LabelMapError(ValueError):
    """The data's labels cannot be mapped onto the head; the message names the fix."""


@dataclass(frozen=True)
class LabelMap:
    """``head_index[k]``: the head output of data class ``k`` (``data_classes[k]``)."""

    mode: str  # BY_NAME | FOLDER_ORDER
    data_classes: List[str]
    head_index: List[int]
    source: str  # where the head's names come from

    def apply(self, labels: torch.Tensor) -> torch.Tensor:
        """Data labels (B,) -> head indices (B,); labels below 0 (unlabelled images) stay -1."""
        table = torch.as_tensor(self.head_index, dtype=torch.long, device=labels.device)
        y = labels.long()
        return torch.where(y >= 0, table[y.clamp(min=0)], torch.full_like(y, -1))

    def meta(self) -> Dict[str, Any]:
        return {
            "label_map": self.mode,
            "label_names": self.source,
            "label_indices": dict(zip(self.data_classes, self.head_index)),
        }


def check_mode(mode: str) -> str:
    if mode not in LABEL_MODES:
        raise LabelMapError(f"labels={mode!r}: use by-name (the default) or folder-order.")
    return mode


def _builtin_hint(data: Any, head: HeadNames) -> str:
    """For the built-in set: the label kind whose classes the head names, as a DATA argument."""
    current = str(data.options.get("label", "shape"))
    for kind, names in (("shape", SHAPES), ("texture", TEXTURES)):
        if kind != current and all(head.index(n) is not None for n in names[: len(data.classes)]):
            opts = {k: v for k, v in data.options.items() if k != "label"}
            query = "&".join([f"label={kind}"] + [f"{k}={v}" for k, v in opts.items()])
            return f"; its head was trained on {kind} labels: use --data builtin:{data.split}?{query}"
    return ""


def _refusal(data: Any, head: Optional[HeadNames], missing: Sequence[str], model: str) -> str:
    if head is None:
        return (
            f"the head of {model} names no classes, so the labels of {data.spec} cannot be mapped onto it "
            f"by name; if the data's class folders (sorted) are in the order of its outputs, pass {LABELS_HELP}"
        )
    shown = ", ".join(head.names[:4]) + (", ..." if len(head.names) > 4 else "")
    amb = [m for m in missing if m in head.ambiguous]
    why = f"; {', '.join(amb[:4])} name several of its classes" if amb else ""
    if getattr(data, "kind", "") == "builtin":
        fix = _builtin_hint(data, head) or f"; pass {LABELS_HELP} if the classes are in the head's order"
    elif head.source.startswith("timm imagenet"):
        fix = "; name the class folders by WordNet ids (n01440764, ...) or unambiguous ImageNet words"
    else:
        fix = f"; name the class folders by the head's classes, or pass {LABELS_HELP} if they are in its order"
    return (
        f"the data {data.spec} has classes the head of {model} does not have "
        f"({', '.join(list(missing)[:4])}{', ...' if len(missing) > 4 else ''}; head classes "
        f"from {head.source}: {shown}){why}{fix}"
    )


def map_labels(data: Any, head: Optional[HeadNames], num_outputs: int, mode: str, model: str) -> LabelMap:
    """The map of ``data``'s classes (an ``AnalysisData``) onto a head with ``num_outputs`` outputs
    named ``head`` (None: no names); ``mode``: ``by-name`` or ``folder-order``. Raises
    :class:`LabelMapError` naming the fix."""
    classes = list(data.classes)
    if check_mode(mode) == "folder-order":
        if len(classes) > num_outputs:
            raise LabelMapError(
                f"labels=folder-order: the data {data.spec} has {len(classes)} classes but {model} only "
                f"{num_outputs} outputs"
            )
        return LabelMap(FOLDER_ORDER, classes, list(range(len(classes))), head.source if head else "none")
    index = [head.index(c) if head else None for c in classes]
    missing = [c for c, i in zip(classes, index) if i is None]
    if missing or head is None:
        raise LabelMapError(_refusal(data, head, missing, model))
    return LabelMap(BY_NAME, classes, [int(i) for i in index], head.source)  # type: ignore[arg-type]


__all__ = ["BY_NAME", "FOLDER_ORDER", "LABEL_MODES", "LabelMap", "LabelMapError", "check_mode", "map_labels"]
