"""What a Hessian is taken of (paper Sec. 4, Eq. (3)): the selected parameters (a filter restricts H
to their diagonal block), the fixed (inputs, targets) batches and the scalar loss -- with the
errors that name a wrong filter, batch or loss and its fix."""

from __future__ import annotations

from typing import Callable, List, Sequence, Tuple, Union

import torch
from torch import nn

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
Batches = Sequence[Tuple[torch.Tensor, torch.Tensor]]
ParamFilter = Union[None, str, Sequence[str], Callable[[str, nn.Parameter], bool]]


def _matches(name: str, prefix: str) -> bool:
    prefix = prefix.rstrip(".")
    return name == prefix or name.startswith(prefix + ".")


def select_params(model: nn.Module, params: ParamFilter = None) -> List[Tuple[str, nn.Parameter]]:
    """The (name, parameter) pairs a probe differentiates: every trainable parameter (``None``), those
    under a dotted prefix (``"blocks.3"``) or any of several prefixes, or those a predicate
    ``fn(name, param) -> bool`` accepts. Frozen parameters (``requires_grad=False``) never count."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if params is None:
        chosen = named
    elif isinstance(params, str):
        chosen = [(n, p) for n, p in named if _matches(n, params)]
    elif callable(params):
        chosen = [(n, p) for n, p in named if params(n, p)]
    else:
        prefixes = list(params)
        chosen = [(n, p) for n, p in named if any(_matches(n, s) for s in prefixes)]
    if not chosen:
        sample = ", ".join(n for n, _ in named[:6]) or "none: every parameter is frozen"
        raise ValueError(
            f"the parameter filter {params!r} selects no trainable parameter; names look like "
            f"{sample}. Pass a dotted prefix such as 'blocks.0', a list of them, or a predicate."
        )
    return chosen


def check_batches(batches: Batches, allow_empty: bool = False) -> List[Tuple[torch.Tensor, torch.Tensor]]:
    batches = list(batches)
    if not batches and not allow_empty:
        raise ValueError(
            "batches is empty: the Hessian needs at least one (inputs, targets) batch; pass e.g. [(images, labels)]."
        )
    for i, b in enumerate(batches):
        if not isinstance(b, (tuple, list)) or len(b) != 2:
            raise ValueError(f"batch {i} is a {type(b).__name__}, expected an (inputs, targets) pair.")
        if size_of(b[0]) == 0:
            raise ValueError(f"batch {i} has no samples; drop empty batches.")
    return [(b[0], b[1]) for b in batches]


def size_of(x: object) -> int:
    return int(x.shape[0]) if torch.is_tensor(x) and x.ndim > 0 else 1


def scalar_loss(loss: torch.Tensor) -> torch.Tensor:
    if not torch.is_tensor(loss) or loss.numel() != 1:
        shape = tuple(loss.shape) if torch.is_tensor(loss) else type(loss).__name__
        raise ValueError(
            f"loss_fn returned {shape}, not a scalar: the Hessian is that of one number. Use a "
            f"mean-reduced criterion (e.g. nn.CrossEntropyLoss(reduction='mean'))."
        )
    return loss.reshape(())


__all__ = ["Batches", "LossFn", "ParamFilter", "check_batches", "scalar_loss", "select_params", "size_of"]
