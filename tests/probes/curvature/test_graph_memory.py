"""The Hessian operator keeps its first-order graph between products only while it fits: the bytes
autograd saves are counted exactly (parameters left out), scaled to the process's images, and held
against the free memory; a graph that does not fit is rebuilt per product, with the same products."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import maskdistill.probes.curvature.hvp as hvp_module
from maskdistill.models.modes import curvature_mode
from maskdistill.probes.curvature.graph_memory import GRAPH_SHARE, SavedBytes, graph_fits
from maskdistill.probes.curvature.hvp import HessianOperator
from probes.curvature.cases import CE

D, H, K = 16, 32, 5


def _mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(D, H), nn.Tanh(), nn.Linear(H, K))


def _forward_bytes(model: nn.Module, b: int, exclude=True) -> int:
    x, y = torch.randn(b, D), torch.randint(0, K, (b,))
    with SavedBytes(list(model.parameters()) if exclude else ()) as saved:
        nn.functional.cross_entropy(model(x), y)
    return saved.bytes


def test_the_saved_activations_are_counted_exactly_per_image():
    m = _mlp()
    # per image: the input (D floats, for the first weight's gradient), the tanh output (H, for its
    # own derivative and the second weight's gradient), the log-softmax (K) and the int64 target
    per_image = 4 * (D + H + K) + 8
    assert _forward_bytes(m, 16) - _forward_bytes(m, 8) == 8 * per_image
    assert _forward_bytes(m, 8) - 8 * per_image < 16  # and nothing else but a scalar or two


def test_parameters_are_left_out():
    m = _mlp()
    # backprop into the tanh output needs the second layer's weight (K x H floats); the first layer's
    # weight is not saved (the input needs no gradient)
    assert _forward_bytes(m, 8, exclude=False) - _forward_bytes(m, 8) == 4 * K * H


def test_graph_fits_is_the_share_of_free_memory():
    assert graph_fits(GRAPH_SHARE * 1000, 1000) and not graph_fits(GRAPH_SHARE * 1000 + 1, 1000)


def _split(vit_case):
    m, [(x, y)], exact, _names, _shapes = vit_case
    return m, [(x[:2], y[:2]), (x[2:4], y[2:4]), (x[4:], y[4:])], exact


@pytest.mark.parametrize("free", [10**15, 1])
def test_kept_or_rebuilt_the_products_are_the_exact_hessians(vit_case, monkeypatch, free):
    m, batches, exact = _split(vit_case)
    monkeypatch.setattr(hvp_module, "free_memory", lambda device: free)
    with curvature_mode(m):
        op = HessianOperator(m, CE, batches)
        v = torch.randn(op.n, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
        first, second = op.matvec(v), op.matvec(v)
        both = op.matmat(torch.stack([v, 2 * v]))
    for hv in (first, second, both[0], both[1] / 2):
        torch.testing.assert_close(hv, exact @ v, rtol=1e-9, atol=1e-10)
    assert op.cache_graph == (free > 1)  # 1 byte free: every product rebuilds its batches' graphs
    assert op.products == 4
    # measured on the first of three equal batches, scaled to the six images
    assert op.graph_bytes > 0 and op.graph_bytes % 3 == 0


def test_one_batch_keeps_its_graph_whatever_the_memory(vit_case, monkeypatch):
    m, [(x, y)], exact, _n, _s = vit_case
    monkeypatch.setattr(hvp_module, "free_memory", lambda device: 1)
    with curvature_mode(m):
        op = HessianOperator(m, CE, [(x, y)])
        v = torch.ones(op.n, dtype=torch.float64)
        torch.testing.assert_close(op.matvec(v), exact @ v, rtol=1e-9, atol=1e-10)
    assert op.cache_graph  # rebuilding one batch's graph would hold just as much
