"""Top-1 / top-5 evaluation of a classifier on a labelled dataset, as fine-tuning reports it
(paper Sec. 4: ImageNet-1k top-1 after fine-tuning)."""

from __future__ import annotations

from typing import Callable, Dict

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset


@torch.no_grad()
def topk_accuracy(
    logits_fn: Callable[[torch.Tensor], torch.Tensor],
    dataset: Dataset,
    device: torch.device,
    batch_size: int = 256,
    num_workers: int = 0,
    prefix: str = "",
) -> Dict[str, float]:
    """``dataset[i] -> (normalised image (C, H, W), label)``; returns ``{prefix+"top1", prefix+"top5",
    prefix+"loss"}`` (top-5 is top-min(5, classes)), counted over every image."""
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers)
    n = 0
    correct1 = correct5 = 0.0
    loss = 0.0
    for images, labels in loader:
        images, labels = images.to(device, non_blocking=True), labels.to(device)
        logits = logits_fn(images).float()  # (B, K)
        k = min(5, logits.shape[1])
        top = logits.topk(k, dim=1).indices  # (B, k)
        hit = top == labels[:, None]
        correct1 += hit[:, 0].sum().item()
        correct5 += hit.any(1).sum().item()
        loss += F.cross_entropy(logits, labels, reduction="sum").item()
        n += labels.numel()
    if n == 0:
        raise ValueError("the evaluation set is empty.")
    return {f"{prefix}top1": correct1 / n, f"{prefix}top5": correct5 / n, f"{prefix}loss": loss / n}


__all__ = ["topk_accuracy"]
