"""Put a model into the state the curvature probes need (the optimisation geometry of the paper's
Sec. 4, Fig. 7: Hessian eigenvalues, trace, density and loss landscapes, all measured on the model
as it predicts): eval mode (no dropout / drop path, frozen BatchNorm statistics) and eager
attention, because fused/flash attention kernels have no double backward (PyHessian breaks on such
models). Everything is restored in ``finally``, also when the probe raises.

Two switches cover the attention implementations we meet:
- timm's ``Attention`` (and relatives) carry a boolean ``fused_attn``; it is set to ``False``;
- anything else calling ``F.scaled_dot_product_attention`` (OpenCLIP, ``nn.MultiheadAttention``) is
  limited to the composite "math" kernel, which autograd can differentiate twice.
"""

from __future__ import annotations

import contextlib
from typing import Dict, Iterator, List, Tuple

from torch import nn


def _fused_modules(model: nn.Module) -> List[Tuple[nn.Module, bool]]:
    return [(m, m.fused_attn) for m in model.modules() if isinstance(getattr(m, "fused_attn", None), bool)]


@contextlib.contextmanager
def eager_attention(model: nn.Module) -> Iterator[int]:
    """Switch timm's fused attention off (and SDPA to its math kernel) inside the block; yields the
    number of attention modules switched. Restores each module's own setting afterwards."""
    saved = _fused_modules(model)
    kernel = contextlib.nullcontext()
    try:
        from torch.nn.attention import SDPBackend, sdpa_kernel

        kernel = sdpa_kernel(SDPBackend.MATH)
    except ImportError:  # older torch: timm's switch alone still covers timm models
        pass
    try:
        for m, _ in saved:
            m.fused_attn = False
        with kernel:
            yield len(saved)
    finally:
        for m, flag in saved:
            m.fused_attn = flag


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[None]:
    """``model.eval()`` inside the block; every submodule gets its own ``training`` flag back."""
    modes: Dict[nn.Module, bool] = {m: m.training for m in model.modules()}
    try:
        model.eval()
        yield
    finally:
        for m, mode in modes.items():
            m.training = mode


@contextlib.contextmanager
def curvature_mode(model: nn.Module) -> Iterator[None]:
    """Eval mode + eager attention: what every Hessian and landscape probe runs under."""
    with eval_mode(model), eager_attention(model):
        yield


__all__ = ["eager_attention", "eval_mode", "curvature_mode"]
