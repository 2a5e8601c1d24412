"""The DATA argument of ``maskdistill analyze`` (paper Secs. 3-4 measure models on a set of images):
an image folder or one of the built-in shapes x textures sets.

    /path/to/folder                 images found recursively (class sub-folders give labels; a flat
                                    folder gives label -1), read through data/folder.py's ImageFolder
    builtin                         = builtin:val
    builtin:<split>                 ShapesTextures split train | val | test, labelled by shape
    builtin:cue_conflict            the test split; every built-in image is a cue conflict by
                                    construction (shape and texture drawn independently)
    builtin:<split>?label=texture&size=64&seed=0&images=500
                                    options: label (shape|texture), size (pixels), seed, images (how
                                    many exist; default: what the analysis asks for)

``AnalysisData.subset(n, seed)`` picks the images an analysis uses: a seeded random subset (so a
folder sorted by class is not reduced to its first class), the same for every model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import numpy as np
import torch
from torch.utils.data import Dataset

from maskdistill.data.folder import ImageFolder
from maskdistill.data.readable import DEFAULT_MAX_SHARE, readable_subset
from maskdistill.data.synthetic import SPLITS, ShapesTextures
from maskdistill.parallel.group import SINGLE, Dist

BUILTIN_ALIASES = {"cue_conflict": "test"}
BUILTIN_OPTIONS = ("label", "size", "seed", "images")


@dataclass
class AnalysisData:
    """A parsed DATA argument; ``dataset(transform)`` builds the images with a model's own transform."""

    spec: str
    kind: str  # "folder" | "builtin"
    path: Optional[Path] = None
    split: str = "val"
    options: Dict[str, Any] = field(default_factory=dict)
    classes: List[str] = field(default_factory=list)
    labelled: bool = False
    max_unreadable_share: float = DEFAULT_MAX_SHARE  # of a folder's images examined (data/readable.py)

    def dataset(self, transform: Optional[Callable] = None, num_images: Optional[int] = None) -> Dataset:
        """The whole set (for ``builtin``: ``options['images']`` or ``num_images`` images)."""
        if self.kind == "folder":
            return ImageFolder(self.path, transform=transform)  # type: ignore[arg-type]
        n = int(self.options.get("images") or num_images or 1000)
        return ShapesTextures(
            num_images=n,
            image_size=int(self.options.get("size", 64)),
            seed=int(self.options.get("seed", 0)),
            split=self.split,
            label=str(self.options.get("label", "shape")),
            transform=transform,
        )

    def subset(self, n: int, seed: int, transform: Optional[Callable] = None, world: Dist = SINGLE) -> Dataset:
        """``n`` images (all if fewer exist), chosen by ``seed``; the order is fixed by the seed too.
        ``world``: the processes that share the check of a folder's files (data/readable.py)."""
        if n < 1:
            raise ValueError(f"--images {n}: analyse at least one image.")
        ds = self.dataset(transform, num_images=n)
        if self.kind == "builtin":
            return torch.utils.data.Subset(ds, list(range(min(n, len(ds)))))  # already seeded images
        order = np.random.default_rng(int(seed)).permutation(len(ds))  # later ones replace unreadable images
        return readable_subset(ds, order, n, self.max_unreadable_share, world)

    def describe(self) -> Dict[str, Any]:
        return {
            "data": self.spec,
            "kind": self.kind,
            "path": str(self.path) if self.path else None,
            "split": self.split if self.kind == "builtin" else None,
            "options": dict(self.options),
            "classes": list(self.classes),
            "labelled": self.labelled,
        }


def _parse_options(text: str, spec: str) -> Dict[str, Any]:
    opts: Dict[str, Any] = {}
    for part in filter(None, text.split("&")):
        key, eq, value = part.partition("=")
        if not eq or key not in BUILTIN_OPTIONS:
            raise ValueError(
                f"data {spec!r}: option {part!r} is not one of {', '.join(k + '=...' for k in BUILTIN_OPTIONS)}."
            )
        opts[key] = value if key == "label" else int(value)
    return opts


def parse_data(spec: str) -> AnalysisData:
    """``spec`` -> :class:`AnalysisData`; a missing folder or an unknown built-in set raises naming
    the accepted forms."""
    spec = str(spec).strip()
    if spec == "builtin" or spec.startswith("builtin:"):
        body = spec[len("builtin:") :] if spec.startswith("builtin:") else "val"
        name, _, query = body.partition("?")
        name = name or "val"
        split = BUILTIN_ALIASES.get(name, name)
        if split not in SPLITS:
            raise ValueError(
                f"data {spec!r}: unknown built-in set {name!r}; use builtin:"
                f"{'|'.join(list(SPLITS) + list(BUILTIN_ALIASES))}."
            )
        opts = _parse_options(query, spec)
        probe = ShapesTextures(
            num_images=1,
            image_size=int(opts.get("size", 64)),
            seed=int(opts.get("seed", 0)),
            split=split,
            label=str(opts.get("label", "shape")),
        )  # validates the options
        return AnalysisData(spec, "builtin", split=split, options=opts, classes=list(probe.classes), labelled=True)
    path = Path(spec).expanduser()
    if not path.is_dir():
        raise FileNotFoundError(
            f"data {spec!r} is neither an image folder nor a built-in set; give a folder "
            f"of images (searched recursively) or builtin:val / builtin:cue_conflict."
        )
    folder = ImageFolder(path)  # raises when it holds no images
    return AnalysisData(spec, "folder", path=path, classes=list(folder.classes), labelled=bool(folder.classes))


__all__ = ["AnalysisData", "parse_data", "BUILTIN_ALIASES"]
