"""Where a model runs: one rule for every command (``train.device`` of the jobs, ``--device`` of
``analyze``). ``auto`` takes the GPU when one is visible; under torchrun each process takes the GPU
of its ``LOCAL_RANK``."""

from __future__ import annotations

import os
from typing import Any, Callable, Optional, Tuple

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


def free_memory(device: torch.device) -> int:
    """Bytes this process may still take on ``device``: on a GPU what the driver reports free plus
    what PyTorch's caching allocator holds unused; on the CPU the host's available memory shared
    among the processes torchrun started on this host (``LOCAL_WORLD_SIZE``)."""
    device = torch.device(device)
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return int(free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device))
    return _host_available() // max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))


def _host_available() -> int:
    try:
        return _proc_bytes("/proc/meminfo", "MemAvailable")
    except OSError:
        pass
    try:  # not Linux: free pages (an underestimate of what the system could give back)
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return 2**62  # unknown: no limit is assumed


def peak_memory_of(fn: Callable[[], Any], device: torch.device) -> Tuple[Any, Optional[int]]:
    """``fn()`` and the most memory it took above what was in use when it started: on a GPU from
    the allocator's peak, on Linux from the process's peak resident size (reset first through
    ``/proc/self/clear_refs``; a lower bound where the kernel pages other memory of the process out
    meanwhile); None where neither can be read."""
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        start = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        out = fn()
        torch.cuda.synchronize(device)
        return out, int(torch.cuda.max_memory_allocated(device) - start)
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # the peak resident size starts again from the current one
        start = _proc_bytes("/proc/self/status", "VmRSS")
    except OSError:
        return fn(), None
    out = fn()
    return out, max(0, _proc_bytes("/proc/self/status", "VmHWM") - start)


def _proc_bytes(path: str, field: str) -> int:
    """A ``Field:   N kB`` line of a /proc file, in bytes."""
    with open(path) as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise OSError(f"{path} has no {field}")


__all__ = ["free_memory", "peak_memory_of", "resolve_device"]
