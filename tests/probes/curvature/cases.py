"""Shared cases of the Hessian tests: a tiny float64 timm ViT with its exact Hessian (the
``vit_case`` fixture, in conftest.py) and quadratics with a known spectrum (Hessian A everywhere)."""

from __future__ import annotations

import torch
from torch import nn
from torch.func import functional_call

from helpers.models import tiny_vit

CE = nn.CrossEntropyLoss()


def make_vit_case():
    """A 691-parameter ViT, a batch of 6, and its exact Hessian (float64)."""
    torch.set_num_threads(1)
    m = tiny_vit(dtype=torch.float64)
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(6, 1, 8, 8, generator=g, dtype=torch.float64), torch.randint(0, 3, (6,), generator=g)
    names = [n for n, _ in m.named_parameters()]
    shapes = [p.shape for p in m.parameters()]
    theta = torch.cat([p.detach().reshape(-1) for p in m.parameters()])
    m.eval()
    for blk in m.blocks:
        blk.attn.fused_attn = False

    def f(t):
        ps = [c.view(s) for c, s in zip(torch.split(t, [s.numel() for s in shapes]), shapes)]
        return CE(functional_call(m, dict(zip(names, ps)), (x,)), y)

    H = torch.autograd.functional.hessian(f, theta, vectorize=True)
    for blk in m.blocks:
        blk.attn.fused_attn = True
    m.train()
    return m, [(x, y)], H, names, shapes


def by_magnitude(ev: torch.Tensor) -> torch.Tensor:
    return ev[ev.abs().argsort(descending=True)]


class Theta(nn.Module):
    """``forward(x) -> θ`` so that ``loss_fn(θ, A) = ½θᵀAθ`` has Hessian A everywhere."""

    def __init__(self, theta: torch.Tensor):
        super().__init__()
        self.theta = nn.Parameter(theta.clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.theta


def quad_loss(theta: torch.Tensor, A: torch.Tensor) -> torch.Tensor:
    return 0.5 * theta @ A @ theta


def sym_with_spectrum(spectrum, seed=0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    Q, _ = torch.linalg.qr(torch.randn(len(spectrum), len(spectrum), generator=g, dtype=torch.float64))
    return Q @ torch.diag(torch.tensor(spectrum, dtype=torch.float64)) @ Q.T


SPECTRUM = [-10.0, 6.0, 3.0, 2.5, 1.0, 0.5, 0.25, -0.5, 0.1, 0.05] + [0.01] * 10
