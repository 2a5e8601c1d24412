"""Frozen-feature evaluation: features of a frozen encoder, then a k-NN classifier (cosine
similarity, temperature-weighted votes as in DINO) and a linear probe (multinomial logistic
regression). Used by the demo to show that an MD student learned something a randomly initialised
student of the same architecture has not."""

from __future__ import annotations

from typing import Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from maskdistill.data.transforms import to_unit


@torch.no_grad()
def extract_features(
    model: nn.Module,
    dataset: Dataset,
    mean: Sequence[float],
    std: Sequence[float],
    batch_size: int = 256,
    device: str = "cpu",
) -> Tuple[torch.Tensor, torch.Tensor]:
    """``dataset[i] -> (uint8 image, label)``; returns features (n, C) float32 and labels (n,).
    The feature is the model's own pooled pre-logits representation (timm's ``forward_head(...,
    pre_logits=True)``: CLS token or token average, with BEiT's fc_norm), as a linear probe or
    fine-tuning would see it."""
    model = model.eval().to(device)
    m = torch.tensor(mean, device=device).view(1, -1, 1, 1)
    s = torch.tensor(std, device=device).view(1, -1, 1, 1)
    feats, labels = [], []
    for images, y in DataLoader(dataset, batch_size=batch_size):
        tokens = model.forward_features((to_unit(images.to(device)) - m) / s)  # (B, p + N, C)
        feats.append(model.forward_head(tokens, pre_logits=True).float().cpu())  # (B, C)
        labels.append(torch.as_tensor(y))
    return torch.cat(feats), torch.cat(labels)


def knn_accuracy(
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    test_x: torch.Tensor,
    test_y: torch.Tensor,
    k: int = 20,
    temperature: float = 0.07,
) -> float:
    """Top-1 accuracy of a weighted k-NN vote on cosine similarity (DINO's protocol)."""
    a, b = F.normalize(train_x.float(), dim=1), F.normalize(test_x.float(), dim=1)
    sim, idx = (b @ a.T).topk(min(k, len(a)), dim=1)  # (n_test, k)
    num_classes = int(max(train_y.max(), test_y.max())) + 1
    votes = torch.zeros(len(b), num_classes).scatter_add_(1, train_y[idx], (sim / temperature).exp())
    return float((votes.argmax(1) == test_y).float().mean())


def linear_probe_accuracy(
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    test_x: torch.Tensor,
    test_y: torch.Tensor,
    weight_decay: float = 1e-4,
    steps: int = 300,
) -> float:
    """Top-1 accuracy of an L2-regularised softmax regression on standardised features (L-BFGS)."""
    mu, sd = train_x.mean(0), train_x.std(0) + 1e-6
    xa, xb = (train_x - mu) / sd, (test_x - mu) / sd
    num_classes = int(max(train_y.max(), test_y.max())) + 1
    lin = nn.Linear(xa.shape[1], num_classes)
    opt = torch.optim.LBFGS(lin.parameters(), lr=1.0, max_iter=steps, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = F.cross_entropy(lin(xa), train_y) + weight_decay * lin.weight.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        return float((lin(xb).argmax(1) == test_y).float().mean())
