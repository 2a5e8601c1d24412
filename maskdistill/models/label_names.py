"""The names of a classifier's outputs, so that data labels can be mapped onto the head by name
rather than by the order of class folders (paper Secs. 4-5: every loss, Hessian, landscape and
decision number of a classifier is taken against the labels its head was trained on).

- a maskdistill checkpoint records its class names (``ModelInfo.classes``): output ``i`` is
  ``classes[i]``;
- a timm head of an ImageNet size (1000, 11821, 21843 outputs) is named by timm's own ImageNet
  metadata (``timm.data.ImageNetInfo``, subset from ``infer_imagenet_subset``): WordNet ids
  (``n01440764``) and, as aliases, the words of each synset (``tench``, ``Tinca tinca``); a word that
  names several synsets (``crane``: the bird and the machine) is no alias;
- any other head has no names (None).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence


@dataclass(frozen=True)
class HeadNames:
    """``names[i]``: output ``i``'s name; ``aliases``: other unambiguous names -> output index;
    ``ambiguous``: words that name several outputs (refused as labels, listed in errors)."""

    names: List[str]
    source: str  # "checkpoint classes" | "timm imagenet-1k metadata" | ...
    aliases: Dict[str, int] = field(default_factory=dict)
    ambiguous: Dict[str, List[int]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_lookup", {n: i for i, n in enumerate(self.names)})

    def index(self, label: str) -> Optional[int]:
        """The output that ``label`` names (a name, then an alias), else None."""
        lookup: Dict[str, int] = self._lookup
        return lookup[label] if label in lookup else self.aliases.get(label)


def imagenet_names(subset: str) -> HeadNames:
    """The outputs of a timm ImageNet head of ``subset`` (e.g. ``imagenet-1k``), from timm's metadata."""
    from timm.data import ImageNetInfo

    meta = ImageNetInfo(subset)
    wnids = list(meta.label_names())
    owners: Dict[str, List[int]] = {}
    for i, desc in enumerate(meta.label_descriptions()):
        for word in {w.strip() for w in str(desc).split(",") if w.strip()}:
            owners.setdefault(word, []).append(i)
    aliases = {w: ix[0] for w, ix in owners.items() if len(ix) == 1}
    ambiguous = {w: ix for w, ix in owners.items() if len(ix) > 1}
    return HeadNames(wnids, f"timm {subset} metadata", aliases, ambiguous)


def head_names(num_classes: int, classes: Sequence[str] = ()) -> Optional[HeadNames]:
    """The names of a head's ``num_classes`` outputs: the recorded ``classes`` (when they are as many),
    else timm's ImageNet names for an ImageNet-sized head, else None (a head without names). Recorded
    classes of another count describe no head: None."""
    if num_classes <= 0:
        return None
    if classes:
        return HeadNames(list(classes), "checkpoint classes") if len(classes) == num_classes else None
    from timm.data import infer_imagenet_subset

    subset = infer_imagenet_subset({"num_classes": num_classes})
    return imagenet_names(subset) if subset else None


__all__ = ["HeadNames", "head_names", "imagenet_names"]
