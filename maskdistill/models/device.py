"""Where a model runs: one rule for every command (``train.device`` of the jobs, ``--device`` of
``analyze``). ``auto`` takes the GPU when one is visible; under torchrun each process takes the GPU
of its ``LOCAL_RANK``."""

from __future__ import annotations

import os

import torch

from maskdistill.errors import UsageError


def resolve_device(name: str | torch.device = "auto", option: str = "--device") -> torch.device:
    """``auto`` | ``cpu`` | ``cuda`` | ``cuda:N`` -> a device; ``option`` names the setting in the error
    (e.g. ``train.device``) when CUDA is asked for but not visible."""
    text = str(name)
    if text == "auto" and not torch.cuda.is_available():
        return torch.device("cpu")
    if text in ("auto", "cuda"):
        text = f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
    try:
        device = torch.device(text)
    except RuntimeError:
        raise UsageError(f"{option}={name!r} is not a device; use auto, cpu, cuda or cuda:N.") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"{option}={name}: no CUDA device is visible here; use {option}=cpu.")
    return device


__all__ = ["resolve_device"]
