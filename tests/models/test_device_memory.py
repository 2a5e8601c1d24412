"""What a process may still take on its device and the peak a function takes: the CPU figures
read from Linux's /proc, shared among the processes torchrun started on the host."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

import maskdistill.models.device as device_module
from maskdistill.models.device import free_memory

MB = 2**20
linux = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc (Linux)")


def test_free_memory_on_the_cpu_is_shared_among_the_local_processes(monkeypatch):
    monkeypatch.setattr(device_module, "_host_available", lambda: 12_000 * MB)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    assert free_memory(torch.device("cpu")) == 12_000 * MB
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")
    assert free_memory(torch.device("cpu")) == 3_000 * MB


@linux
def test_the_host_memory_is_read():
    assert 0 < device_module._host_available() < 2**50


PEAK_SCRIPT = """
import torch
from maskdistill.models.device import peak_memory_of
MB = 2**20
def hold():
    a = torch.ones(64 * MB // 4)  # 64 MB, touched
    b = torch.ones(64 * MB // 4)
    return float(a[0] + b[0])
out, peak = peak_memory_of(hold, torch.device("cpu"))
_, small = peak_memory_of(lambda: torch.ones(16), torch.device("cpu"))
print(out, peak / MB, small / MB)
"""


@linux
def test_the_peak_of_a_function_counts_what_it_held_at_once():
    # a fresh process: in a long test session the kernel may page out other memory meanwhile
    done = subprocess.run([sys.executable, "-c", PEAK_SCRIPT], capture_output=True, text=True, check=True)
    out, peak, small = (float(t) for t in done.stdout.split())
    assert out == 2.0
    assert 120 <= peak <= 200, peak  # MB: both tensors at once
    assert small < 16, small  # the peak starts again from the current size
