"""The tests' one reader of saved weights: the tensors of one file of a run's latest checkpoint
(``model``: the task's trainable state; ``backbone``: the exported timm network; ``optimizer``)."""

from __future__ import annotations

from pathlib import Path
from typing import Dict

import torch
from safetensors.torch import load_file

from maskdistill.runs.checkpoint import find_checkpoint


def latest_weights(run: str | Path, part: str = "model") -> Dict[str, torch.Tensor]:
    """``<run>/checkpoints/<latest>/<part>.safetensors`` (``run`` may also be a checkpoint folder)."""
    return load_file(str(find_checkpoint(run) / f"{part}.safetensors"))
