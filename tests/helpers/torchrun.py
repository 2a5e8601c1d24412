"""Launch a command in several gloo processes on this CPU through torchrun, the way a user runs
``torchrun --nproc_per_node=N -m maskdistill ...`` (one thread per process)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Sequence


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(
    args: Sequence[str], cwd: Path, nproc: int = 2, timeout: int = 300, module: bool = True
) -> subprocess.CompletedProcess:
    """``torchrun --nproc_per_node=nproc [-m] args...`` in ``cwd``; ``module``: ``args[0]`` is a
    module (``maskdistill``), else a script path. Returns the finished process (check returncode)."""
    env = dict(os.environ, MASTER_ADDR="127.0.0.1", OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_PORT"):
        env.pop(k, None)
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nnodes=1",
        f"--nproc_per_node={nproc}",
        "--master_addr=127.0.0.1",
        f"--master_port={free_port()}",
        *(["-m"] if module else []),
        *map(str, args),
    ]
    return subprocess.run(cmd, env=env, cwd=str(cwd), capture_output=True, text=True, timeout=timeout)
