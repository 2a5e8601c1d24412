"""Readers for the stimulus sets of the decision probes (paper App. C, Figs. 11, 12): the non-parametric
out-of-distribution sets of model-vs-human (sketch, stylized, edge, silhouette, cue-conflict) and, in
model-vs-human's download layout, any of the 17 sets with their conditions.

Layouts under a stimulus root (several sets side by side, or the root is one set's folder):

- ``<set>/<category>/<file>``: category from the folder (one of the 16 categories), condition ``"0"``;
  texture-vs-shape's folder names are accepted for three sets: ``style-transfer-preprocessed-512``
  (cue-conflict), ``edges`` (edge) and ``filled-silhouettes`` (silhouette);
- ``<set>/dnn/session-1/<imagename>``: model-vs-human's download; category and condition from the
  7-field image name ``NNNN_tag_sXX_<condition>_<category>_NN_<image>``.

Every stimulus gets the ``image_id`` under which model-vs-human's human files know it (the file name,
or the part of the image name after its sixth ``_``), so model decisions line up with human trials.
Unknown folder names are an error that lists them with the known ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

from PIL import Image
from torch.utils.data import Dataset

from maskdistill.data.folder import IMG_EXTENSIONS
from maskdistill.data.readable import drop_unreadable
from maskdistill.parallel.group import SINGLE, Dist

NONPARAMETRIC = ("sketch", "stylized", "edge", "silhouette", "cue-conflict")
PARAMETRIC = (
    "colour",
    "contrast",
    "high-pass",
    "low-pass",
    "phase-scrambling",
    "power-equalisation",
    "false-colour",
    "rotation",
    "eidolonI",
    "eidolonII",
    "eidolonIII",
    "uniform-noise",
)
FOLDER_ALIASES: Dict[str, str] = {
    "style-transfer-preprocessed-512": "cue-conflict",
    "edges": "edge",
    "filled-silhouettes": "silhouette",
}
KNOWN_FOLDERS = {**{d: d for d in NONPARAMETRIC + PARAMETRIC}, **FOLDER_ALIASES}


@dataclass(frozen=True)
class Stimulus:
    path: Path
    dataset: str
    category: str
    condition: str
    image_id: str


def _images(d: Path) -> List[Path]:
    return sorted(
        p for p in d.iterdir() if p.is_file() and p.suffix.lower() in IMG_EXTENSIONS and not p.name.startswith(".")
    )


def _subdirs(d: Path) -> List[Path]:
    return sorted(p for p in d.iterdir() if p.is_dir() and not p.name.startswith("."))


def find_stimulus_sets(root: str | Path, strict: bool = True) -> Dict[str, Path]:
    """``{dataset name: folder}`` of the sets under ``root`` (or ``root`` itself when its name is a set's).
    With ``strict``, sub-folders with unknown names raise ``ValueError`` listing them."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"stimulus folder {root} does not exist.")
    subdirs = _subdirs(root)
    if root.name in KNOWN_FOLDERS and not any(d.name in KNOWN_FOLDERS for d in subdirs):
        return {KNOWN_FOLDERS[root.name]: root}  # the root is one set's folder
    found: Dict[str, Path] = {}
    unknown = []
    for d in subdirs:
        if d.name in KNOWN_FOLDERS:
            name = KNOWN_FOLDERS[d.name]
            if name in found:
                raise ValueError(f"{root} holds two folders for {name}: {found[name].name} and {d.name}; keep one.")
            found[name] = d
        else:
            unknown.append(d.name)
    if unknown and strict:
        raise ValueError(
            f"unknown stimulus folder(s) in {root}: {', '.join(unknown)}; known names: "
            f"{', '.join(sorted(KNOWN_FOLDERS))}."
        )
    if not found:
        raise ValueError(f"no stimulus set in {root}: expected sub-folders named {', '.join(sorted(KNOWN_FOLDERS))}.")
    return found


class StimulusSet(Dataset):
    """``set[i] -> (PIL RGB image, category index)``; ``stimuli[i]`` holds path, category, condition,
    image id. ``classes``: the label set (the 16 categories by default)."""

    def __init__(
        self,
        stimuli: Sequence[Stimulus],
        classes: Sequence[str],
        transform: Optional[Callable] = None,
        unreadable: Sequence[str] = (),
    ) -> None:
        if not stimuli:
            raise ValueError("empty stimulus set.")
        self.stimuli, self.classes, self.transform = list(stimuli), list(classes), transform
        self.unreadable = list(unreadable)  # image files skipped because they do not decode
        self.class_to_idx = {c: i for i, c in enumerate(self.classes)}
        bad = sorted({s.category for s in self.stimuli} - set(self.classes))
        if bad:
            raise ValueError(
                f"stimuli of unknown categor{'y' if len(bad) == 1 else 'ies'} {bad}; label set: {self.classes}."
            )
        self.dataset = self.stimuli[0].dataset

    def __len__(self) -> int:
        return len(self.stimuli)

    def load(self, i: int) -> Image.Image:
        with Image.open(self.stimuli[i].path) as im:
            return im.convert("RGB")

    def __getitem__(self, i: int):
        img = self.load(i)
        return (self.transform(img) if self.transform else img), self.class_to_idx[self.stimuli[i].category]

    def subset(self, max_per_class: Optional[int] = None) -> "StimulusSet":
        """The first ``max_per_class`` stimuli (file order) of every category and condition."""
        if not max_per_class:
            return self
        seen: Dict[tuple, int] = {}
        keep = []
        for s in self.stimuli:
            k = (s.category, s.condition)
            if seen.get(k, 0) < max_per_class:
                keep.append(s)
                seen[k] = seen.get(k, 0) + 1
        return StimulusSet(keep, self.classes, self.transform, self.unreadable)


def read_stimuli(
    folder: str | Path,
    dataset: Optional[str] = None,
    classes: Optional[Sequence[str]] = None,
    transform: Optional[Callable] = None,
    world: Dist = SINGLE,
) -> StimulusSet:
    """One set's folder -> :class:`StimulusSet` (either layout; ``classes`` default: the 16 categories);
    ``world``: the processes that share the check of the files."""
    from maskdistill.probes.decisions.imagenet16 import categories16
    from maskdistill.probes.decisions.responses import image_id

    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise FileNotFoundError(f"stimulus folder {folder} does not exist.")
    dataset = dataset or KNOWN_FOLDERS.get(folder.name, folder.name)
    classes = list(classes or categories16())
    session = folder / "dnn"
    stimuli: List[Stimulus] = []
    if session.is_dir():  # model-vs-human download: dnn/session-*/NNNN_tag_sXX_cond_cat_NN_image
        for sess in _subdirs(session):
            for p in _images(sess):
                parts = p.name.split("_", 6)
                if len(parts) != 7:
                    raise ValueError(f"{p}: not a model-vs-human image name (7 '_'-separated fields).")
                stimuli.append(Stimulus(p, dataset, parts[4], parts[3], image_id(p.name)))
    else:
        subdirs = _subdirs(folder)
        unknown = [d.name for d in subdirs if d.name not in classes]
        if unknown:
            raise ValueError(
                f"unknown category folder(s) in {folder}: {', '.join(unknown)}; the label set is {', '.join(classes)}."
            )
        for d in subdirs:
            stimuli += [Stimulus(p, dataset, d.name, "0", p.name) for p in _images(d)]
    if not stimuli:
        raise ValueError(f"no images in {folder} (expected <category>/<image> or dnn/session-1/<image>).")
    stimuli, unreadable = drop_unreadable(stimuli, lambda s: s.path, world=world)  # skipped, counted, capped
    return StimulusSet(stimuli, classes, transform, unreadable)


__all__ = [
    "FOLDER_ALIASES",
    "KNOWN_FOLDERS",
    "NONPARAMETRIC",
    "PARAMETRIC",
    "Stimulus",
    "StimulusSet",
    "find_stimulus_sets",
    "read_stimuli",
]
