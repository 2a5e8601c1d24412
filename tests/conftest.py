"""Suite-wide fixtures. One intra-op torch thread for every test: the tests use tiny models, for which
a second thread mostly spins (on a loaded 2-core machine two threads made small workloads 5-300x
slower), and one thread makes every run use the same reductions. Tiny configs for the jobs (a
2-block, 32-wide BEiT on 32 px built-in images; a training step takes milliseconds on a CPU), an
image folder of PNGs, and a logging guard for tests that go through the CLI (which reconfigures the
root logger). Saved weights are read with ``helpers.checkpoints.latest_weights``."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable, List

import numpy as np
import pytest
import torch
from PIL import Image

from maskdistill.config import PretrainConfig, load_config


@pytest.fixture(autouse=True)
def _one_torch_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# 48 built-in images of 32 px, batch 8 -> 6 steps per epoch; 4x4 patch grid, 6 masked patches.
TINY: List[str] = [
    "data.builtin_images=48",
    "data.img_size=32",
    "data.builtin_image_size=32",
    "data.num_workers=0",
    "student.kwargs.patch_size=8",
    "student.kwargs.embed_dim=32",
    "student.kwargs.depth=2",
    "student.kwargs.num_heads=2",
    "mask.num_masked=6",
    "mask.min_block=2",
    "train.batch_size=8",
    "train.epochs=1",
    "train.device=cpu",
    "teacher.spec=pixels",
    "train.log_every=1",
    "optim.warmup_epochs=0.5",
]


@pytest.fixture
def make_cfg() -> Callable[..., PretrainConfig]:
    """``make_cfg("train.max_steps=3", ...)`` -> the tiny demo config with extra overrides."""

    def make(*extra: str) -> PretrainConfig:
        return load_config("demo", TINY + list(extra))

    return make


@pytest.fixture
def tiny_overrides() -> List[str]:
    return list(TINY)


def write_pngs(
    root: Path, n_per_class: int = 20, classes=("cats", "dogs"), size: int = 32, seed: int = 0
) -> List[Path]:
    rng = np.random.default_rng(seed)
    paths = []
    for c in classes:
        d = root / c if c else root
        d.mkdir(parents=True, exist_ok=True)
        for i in range(n_per_class):
            p = d / f"img_{i:03d}.png"
            Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(p)
            paths.append(p)
    return paths


@pytest.fixture
def png_folder(tmp_path: Path) -> Path:
    """40 PNGs of 32x32 in two class folders (cats, dogs)."""
    root = tmp_path / "images"
    write_pngs(root)
    return root


@pytest.fixture
def pngs() -> Callable[..., List[Path]]:
    return write_pngs


@pytest.fixture
def restore_logging():
    """The CLI calls logging.basicConfig(force=True) with a file handler in the run dir; put the
    root logger back afterwards so later tests (and caplog) are not affected."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for h in list(root.handlers):
        if h not in handlers:
            root.removeHandler(h)
            h.close()
    for h in handlers:
        if h not in root.handlers:
            root.addHandler(h)
    root.setLevel(level)


@pytest.fixture(scope="session")
def teacher_run(tmp_path_factory) -> Path:
    """A tiny maskdistill run (2 steps from the pixel teacher), usable as ``teacher.spec=<dir>``."""
    from maskdistill.train.pretrain import pretrain

    out = tmp_path_factory.mktemp("teacher_run")
    pretrain(load_config("demo", TINY + ["train.max_steps=2", "train.seed=7"]), out, overwrite=True)
    return out


class CallHook:
    """Wraps ``MaskedDistiller.forward``: ``hook(n, out)`` sees the 1-based call number and the
    returned dict and may replace the loss (or raise) -- a deterministic way to break step k."""

    def __init__(self, monkeypatch, hook):
        from maskdistill.distill.distiller import MaskedDistiller

        self.calls = 0
        self.active = True
        original = MaskedDistiller.forward

        def forward(module, *args, **kwargs):
            out = original(module, *args, **kwargs)
            if not self.active:
                return out
            self.calls += 1
            return hook(self.calls, out)

        monkeypatch.setattr(MaskedDistiller, "forward", forward)


@pytest.fixture
def hook_forward(monkeypatch):
    return lambda hook: CallHook(monkeypatch, hook)


@pytest.fixture(scope="session")
def vit_file(tmp_path_factory) -> Path:
    """A tiny random timm ViT as safetensors, for ``timm:vit_small_patch16_224@<file>``."""
    from helpers.finetune import save_tiny_vit

    return save_tiny_vit(tmp_path_factory.mktemp("vit") / "vit.safetensors")
