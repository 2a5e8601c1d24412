"""Decision mappings: from a classifier's logits to a decision among the data's categories (paper
Sec. 5 and App. C, Figs. 8a, 11, 12).

- **16-class ImageNet** (Geirhos et al. 2018/2019/2021): softmax over the 1000 ImageNet-1k logits,
  then per category the **mean** probability over that category's ImageNet indices (207 indices in
  all), arg-max. The mapping ships as ``probes/decisions/data/imagenet16.json`` (its ``source`` field names the
  origin: model-vs-human's / texture-vs-shape's category definitions).
- **Direct**: a classifier trained on the data's own label set (the built-in data) decides by arg-max
  over its logits, reordered by class name when the orders differ.

:func:`decision_mapping_for` picks one and explains, when neither applies, which one could.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field
from importlib import resources
from typing import Dict, List, Optional, Sequence, Tuple

import torch

IMAGENET_CLASSES = 1000


@functools.lru_cache(maxsize=1)
def imagenet16() -> Dict[str, object]:
    """The shipped mapping: ``{"source", "aggregation", "categories": [{"name", "imagenet_indices",
    "wnids"}, ...]}`` (16 categories in alphabetical order, model-vs-human's order)."""
    text = resources.files(__package__).joinpath("data/imagenet16.json").read_text()
    data = json.loads(text)
    n = sum(len(c["imagenet_indices"]) for c in data["categories"])
    if len(data["categories"]) != 16 or n != data["num_indices"]:
        raise RuntimeError(
            f"corrupt probes/decisions/data/imagenet16.json: {len(data['categories'])} categories, "
            f"{n} indices (expected 16 and {data['num_indices']}); reinstall maskdistill."
        )
    return data


def categories16() -> Tuple[str, ...]:
    return tuple(c["name"] for c in imagenet16()["categories"])  # type: ignore[index]


def category_indices() -> Dict[str, List[int]]:
    return {c["name"]: list(c["imagenet_indices"]) for c in imagenet16()["categories"]}  # type: ignore[index]


@functools.lru_cache(maxsize=4)
def _averaging_matrix(dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """(1000, 16) matrix W with W[i, c] = 1/n_c for the n_c indices i of category c: probabilities @ W is
    the per-category mean in one matmul (no Python loop over categories on the hot path)."""
    w = torch.zeros(IMAGENET_CLASSES, 16, dtype=dtype)
    for c, idx in enumerate(category_indices().values()):
        w[idx, c] = 1.0 / len(idx)
    return w


def sixteen_class_probabilities(logits: torch.Tensor) -> torch.Tensor:
    """(B, 1000) ImageNet logits -> (B, 16) mean probability per category (rows do not sum to 1)."""
    if logits.ndim != 2 or logits.shape[1] != IMAGENET_CLASSES:
        raise ValueError(
            f"the 16-class mapping needs ImageNet-1k logits of shape (B, 1000), got {tuple(logits.shape)}."
        )
    probs = logits.float().softmax(dim=1)  # (B, 1000), float32 even for bf16 models
    return probs @ _averaging_matrix().to(probs.device)  # (B, 16)


@dataclass
class DecisionMapping:
    """``scores(logits) -> (B, K)`` over ``classes``; ``decide(logits) -> (B,)`` indices into them."""

    kind: str  # "imagenet16" | "direct"
    classes: List[str]
    order: Optional[List[int]] = None  # direct: model output index for each of ``classes``
    meta: Dict[str, object] = field(default_factory=dict)

    def scores(self, logits: torch.Tensor) -> torch.Tensor:
        if self.kind == "imagenet16":
            return sixteen_class_probabilities(logits)
        if logits.ndim != 2 or (self.order is None and logits.shape[1] != len(self.classes)):
            raise ValueError(f"direct decisions need logits (B, {len(self.classes)}), got {tuple(logits.shape)}.")
        return logits if self.order is None else logits[:, self.order]

    def decide(self, logits: torch.Tensor) -> torch.Tensor:
        return self.scores(logits).argmax(dim=1)  # (B,)

    def names(self, decisions: torch.Tensor) -> List[str]:
        return [self.classes[i] for i in decisions.tolist()]


def imagenet16_mapping() -> DecisionMapping:
    data = imagenet16()
    return DecisionMapping(
        "imagenet16",
        list(categories16()),
        meta={
            "decision_mapping": "imagenet16",
            "label_map": "by name (16 categories over their ImageNet indices)",
            "mapping_aggregation": data["aggregation"],
            "mapping_source": data["source"],
        },
    )


def direct_mapping(model_classes: Sequence[str], data_classes: Sequence[str]) -> DecisionMapping:
    model_classes, data_classes = list(model_classes), list(data_classes)
    order = None if model_classes == data_classes else [model_classes.index(c) for c in data_classes]
    return DecisionMapping("direct", data_classes, order, meta={"decision_mapping": "direct", "label_map": "by name"})


def decision_mapping_for(
    num_outputs: int, model_classes: Sequence[str], data_classes: Sequence[str], aliases: Sequence[Sequence[str]] = ()
) -> DecisionMapping:
    """The mapping for a classifier with ``num_outputs`` logits (named ``model_classes`` when known)
    on data labelled with ``data_classes``.

    ``aliases``: other names of the same label set, index for index (the built-in cue-conflict set's
    classes can be named by their shapes or by their textures). Raises ``ValueError`` saying which
    mapping would be possible otherwise."""
    data_classes = list(data_classes)
    model_classes = list(model_classes or [])
    for names in [data_classes, *[list(a) for a in aliases]]:
        if model_classes and sorted(model_classes) == sorted(names) and len(model_classes) == num_outputs:
            m = direct_mapping(model_classes, names)
            m.classes = data_classes  # decisions are reported in the data's names
            return m
    cats = set(categories16())
    if num_outputs == IMAGENET_CLASSES and set(data_classes) <= cats:
        return imagenet16_mapping()
    if num_outputs == IMAGENET_CLASSES:
        raise ValueError(
            f"an ImageNet-1k classifier decides among the 16 ImageNet categories "
            f"({', '.join(sorted(cats))}), but the data is labelled "
            f"{sorted(set(data_classes) - cats)[:8]} ...: use a 16-class stimulus set (model-vs-human "
            f"layout) or a classifier trained on these labels."
        )
    have = (
        f"classes {model_classes[:8]}{' ...' if len(model_classes) > 8 else ''}" if model_classes else "no class names"
    )
    raise ValueError(
        f"no decision mapping for a classifier with {num_outputs} outputs ({have}) on data labelled "
        f"{data_classes[:8]}{' ...' if len(data_classes) > 8 else ''}: decisions need either an "
        f"ImageNet-1k classifier (1000 outputs -> 16-class mapping) on the 16-class sets, or a "
        f"classifier whose class names equal the data's label set (direct), e.g. one trained with "
        f"`maskdistill classify` on the same data."
    )


__all__ = [
    "DecisionMapping",
    "categories16",
    "category_indices",
    "decision_mapping_for",
    "direct_mapping",
    "imagenet16",
    "imagenet16_mapping",
    "sixteen_class_probabilities",
    "IMAGENET_CLASSES",
]
