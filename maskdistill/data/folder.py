"""Image folders: ``root/<class>/<image>`` (labels from sub-folder names, as torchvision's
ImageFolder) or a flat folder of images (label -1), found recursively under each class folder.

Errors name the problem and the fix: a missing folder, a folder with no images, a class folder that
holds no image. Corrupt files are detected when read (see ``pipeline.py``: skipped and counted).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, List, Optional, Tuple

from PIL import Image
from torch.utils.data import Dataset

IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".pgm", ".gif")


def _images_under(d: Path) -> List[Path]:
    # Hidden files and folders (.ipynb_checkpoints, macOS "._x.jpg" resource forks) are not images.
    return sorted(
        p
        for p in d.rglob("*")
        if p.suffix.lower() in IMG_EXTENSIONS
        and p.is_file()
        and not any(part.startswith(".") for part in p.relative_to(d).parts)
    )


class ImageFolder(Dataset):
    """``dataset[i] -> (PIL RGB image, label)``; ``.samples`` holds (path, label)."""

    def __init__(self, root: str | Path, transform: Optional[Callable] = None, mode: str = "RGB") -> None:
        self.root = Path(root).expanduser()
        if not self.root.is_dir():
            raise FileNotFoundError(
                f"data folder {str(self.root)!r} does not exist; set data.path to a "
                f"folder of images (class sub-folders or flat), or data.path=builtin."
            )
        subdirs = sorted(d for d in self.root.iterdir() if d.is_dir() and not d.name.startswith("."))
        top = sorted(p for p in self.root.iterdir() if p.is_file() and p.suffix.lower() in IMG_EXTENSIONS)
        self.samples: List[Tuple[Path, int]] = []
        if subdirs and not top:
            self.classes = [d.name for d in subdirs]
            empty = []
            for label, d in enumerate(subdirs):
                found = _images_under(d)
                empty += [] if found else [d.name]
                self.samples += [(p, label) for p in found]
            if empty and len(empty) < len(subdirs):
                raise ValueError(
                    f"class folder(s) {', '.join(empty[:10])} in {self.root} hold no images "
                    f"({', '.join(IMG_EXTENSIONS)}); add images or remove the folders."
                )
        else:
            self.classes = []
            self.samples = [(p, -1) for p in _images_under(self.root)]
        if not self.samples:
            raise ValueError(
                f"no images ({', '.join(IMG_EXTENSIONS)}) found in {self.root}; point "
                f"data.path at the folder that holds them."
            )
        self.class_to_idx = {c: i for i, c in enumerate(self.classes)}
        self.targets = [t for _, t in self.samples]
        self.transform = transform
        self.mode = mode

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int):
        path, label = self.samples[i]
        with Image.open(path) as im:  # raises OSError for corrupt or truncated files
            img = im.convert(self.mode)
        return (self.transform(img) if self.transform else img), label

    def describe(self, i: int) -> str:
        return str(self.samples[i][0])
