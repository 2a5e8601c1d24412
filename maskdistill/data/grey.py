"""Image plumbing shared by the distortions of the decision probes: the (C, H, W) / (B, C, H, W)
convention, the luminance of the original experiments (ITU-R BT.709 weights, as skimage's rgb2gray)
and lifting an operation on grey planes to images (greyscale, apply, replicate the channels)."""

from __future__ import annotations

from typing import Callable, Tuple

import torch

LUMA = (0.2125, 0.7154, 0.0721)  # ITU-R BT.709 luminance weights (skimage.color.rgb2gray)


def as_batch(x: torch.Tensor, name: str = "image", check_range: bool = True) -> Tuple[torch.Tensor, bool]:
    """(C, H, W) or (B, C, H, W) float in [0, 1] -> (B, C, H, W) and whether a batch dim was added."""
    if not torch.is_tensor(x) or not x.is_floating_point():
        raise TypeError(f"{name} must be a float tensor in [0, 1] (convert uint8 with x.float() / 255).")
    if x.ndim not in (3, 4):
        raise ValueError(f"{name} must be (C, H, W) or (B, C, H, W), got shape {tuple(x.shape)}.")
    if check_range and x.numel() and (float(x.min()) < -1e-6 or float(x.max()) > 1 + 1e-6):
        raise ValueError(
            f"{name} values must lie in [0, 1] (got [{float(x.min()):.3g}, {float(x.max()):.3g}]); "
            f"distort before normalising with mean/std."
        )
    return (x.unsqueeze(0), True) if x.ndim == 3 else (x, False)


def out_like(x: torch.Tensor, squeezed: bool) -> torch.Tensor:
    """Undo the batch dimension :func:`as_batch` added."""
    return x.squeeze(0) if squeezed else x


def luminance(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, 1, H, W) grey level (1-channel input passes through)."""
    if x.shape[1] == 1:
        return x
    if x.shape[1] != 3:
        raise ValueError(f"greyscale conversion needs 1 or 3 channels, got {x.shape[1]}.")
    if torch.equal(x[:, 0], x[:, 1]) and torch.equal(x[:, 1], x[:, 2]):
        return x[:, :1]  # already grey: kept bit for bit (the weights' float sum is not exactly 1)
    w = torch.tensor(LUMA, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x * w).sum(dim=1, keepdim=True)


def grey_op(fn: Callable[[torch.Tensor], torch.Tensor]) -> Callable[..., torch.Tensor]:
    """Lift ``fn`` on (B, 1, H, W) grey planes to images: greyscale, apply, replicate channels."""

    def wrapped(x: torch.Tensor) -> torch.Tensor:
        xb, sq = as_batch(x)
        g = fn(luminance(xb))
        return out_like(g.expand(-1, xb.shape[1], -1, -1).contiguous(), sq)

    return wrapped


__all__ = ["LUMA", "as_batch", "grey_op", "luminance", "out_like"]
