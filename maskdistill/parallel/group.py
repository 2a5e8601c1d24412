"""Process-group set-up for ``torchrun`` (single- and multi-node, env:// rendezvous): NCCL on CUDA,
gloo on CPU. Without torchrun's environment everything runs as one process."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Dist:
    """Who this process is among the job's processes (one process: rank 0 of 1)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """The rank that writes files and logs (rank 0)."""
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world > 1


SINGLE = Dist()


def launched() -> bool:
    """Whether torchrun (or SLURM through it) started this process as one of several."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init_distributed(device: torch.device) -> Dist:
    """Join the job's process group (NCCL on CUDA, gloo otherwise); one process without torchrun."""
    if not launched():
        return SINGLE
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", init_method="env://")
    return Dist(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def barrier(d: Dist) -> None:
    if d.enabled:
        dist.barrier()


__all__ = ["Dist", "SINGLE", "barrier", "init_distributed", "launched"]
