"""Process-group set-up for ``torchrun`` (single- and multi-node, env:// rendezvous): NCCL on CUDA,
gloo on CPU. Without torchrun's environment everything runs as one process."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world > 1


def init_distributed(device: torch.device) -> Dist:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", init_method="env://")
    return Dist(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def mean_across(x: torch.Tensor, d: Dist) -> torch.Tensor:
    if d.enabled:
        x = x.detach().clone()
        dist.all_reduce(x)
        x /= d.world
    return x


def sum_across(x: torch.Tensor, d: Dist) -> torch.Tensor:
    if d.enabled:
        x = x.detach().clone()
        dist.all_reduce(x)
    return x


def barrier(d: Dist) -> None:
    if d.enabled:
        dist.barrier()
