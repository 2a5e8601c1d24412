"""How much memory the Hessian's first-order gradient graph takes, and whether the graph of all of a
process's images may be kept between products (:class:`~.hvp.HessianOperator`).

Keeping the graph (``create_graph=True``, built once) makes each later product one backward pass;
rebuilding it per product costs a forward and a backward more but holds one batch's graph at a
time. The graph grows with the images: a ViT-B/16 keeps about 0.28 GB per 224 px image (measured
on CPU), so a few hundred images fill a GPU. The graph is measured, not guessed: the tensors
autograd saves for the backward passes while the first batch's graph is built
(``saved_tensors_hooks``; parameters, which exist anyway, are left out), scaled to the process's
images.
"""

from __future__ import annotations

from typing import Any, Dict, Iterable, Optional

import torch

# Building the graph and taking one product through it peaks at about 2.3 times the graph's saved
# bytes (the second backward's intermediate results; measured on ViT-S/16 and ViT-B/16 at 224 px,
# CPU): the estimate where the peak cannot be read. A kept graph may therefore take 35 % of the free
# memory, so that the product's peak stays within about 80 % of it.
PEAK_OVER_GRAPH = 2.3
GRAPH_SHARE = 0.35


class SavedBytes:
    """Context manager: ``.bytes`` of the distinct storages autograd saves for backward inside it,
    except those of ``exclude`` (the parameters). On a GPU the allocator's growth is counted too,
    whichever is larger (it also sees the gradients themselves)."""

    def __init__(self, exclude: Iterable[torch.Tensor] = (), device: Optional[torch.device] = None):
        self._skip = {int(t.untyped_storage().data_ptr()) for t in exclude}
        self._seen: Dict[int, int] = {}
        self._device = torch.device(device) if device is not None else None
        self._start = 0
        self.bytes = 0

    def _pack(self, t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        key = int(storage.data_ptr())
        if key not in self._skip:
            self._seen[key] = int(storage.nbytes())
        return t

    def __enter__(self) -> "SavedBytes":
        if self._cuda:
            self._start = torch.cuda.memory_allocated(self._device)
        self._hooks = torch.autograd.graph.saved_tensors_hooks(self._pack, lambda t: t)
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._hooks.__exit__(*exc)
        self.bytes = sum(self._seen.values())
        if self._cuda:
            self.bytes = max(self.bytes, torch.cuda.memory_allocated(self._device) - self._start)

    @property
    def _cuda(self) -> bool:
        return self._device is not None and self._device.type == "cuda"


def graph_budget(free_bytes: float) -> float:
    """The bytes a kept graph may take, with ``free_bytes`` free before it was built."""
    return GRAPH_SHARE * free_bytes


def graph_fits(graph_bytes: float, free_bytes: float) -> bool:
    """Whether a graph of ``graph_bytes`` may be kept, with ``free_bytes`` free before it was built."""
    return graph_bytes <= graph_budget(free_bytes)


__all__ = ["GRAPH_SHARE", "PEAK_OVER_GRAPH", "SavedBytes", "graph_budget", "graph_fits"]
