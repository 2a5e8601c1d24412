"""Suite-wide: one intra-op torch thread. The tests use tiny models, for which a second thread
mostly spins; on a loaded 2-core machine two threads made small workloads 5-300x slower."""
import pytest
import torch


@pytest.fixture(autouse=True)
def _one_torch_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
