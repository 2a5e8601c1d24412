"""Analytic checks of the Hessian probes (paper Sec. 4, Fig. 7): products against
finite differences and the exact Hessian of a tiny timm ViT, eigenvalues and traces of quadratics with
known A (one with a dominant negative eigenvalue) and of least squares (H = 2XᵀX/n), quadrature,
per-block results, side effects (parameters, .grad, RNG, eval mode, fused attention), bad input, and
Lanczos against power iteration on the real ViT4MNIST weights.

Trace tolerance, honestly: Hutchinson's error is statistical, so it is checked as |estimate − tr| ≤
4·SE with the reported SE (and SE ≤ tol·|tr| when it claims convergence); the 1e-3 agreement with the
exact Hessian is checked on the deterministic path (``exact=True``, Σ e_iᵀHe_i), which uses the same
products."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from torch import nn

from helpers.models import tiny_vit
from maskdistill.probes.curvature.hessian import (
    default_blocks,
    eigen_density,
    hessian_summary,
    hessian_trace,
    hvp,
    per_block_sharpness,
    top_eigenvalues,
)
from probes.curvature.cases import CE, SPECTRUM, Theta, by_magnitude, quad_loss, sym_with_spectrum


def snapshot(m: nn.Module):
    return {k: v.detach().clone() for k, v in m.state_dict().items()}


def assert_bitwise(m: nn.Module, before) -> None:
    after = m.state_dict()
    assert all(torch.equal(after[k], v) for k, v in before.items())
    assert all(p.grad is None for p in m.parameters())


# -- products ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["reverse", "forward"])
def test_hvp_matches_exact_hessian_and_finite_differences(vit_case, method):
    m, batches, H, _, shapes = vit_case
    g = torch.Generator().manual_seed(3)
    v = [torch.randn(s, generator=g, dtype=torch.float64) for s in shapes]
    vflat = torch.cat([t.reshape(-1) for t in v])
    hv = torch.cat([t.reshape(-1) for t in hvp(m, CE, batches, v, method=method)])
    assert torch.allclose(hv, H @ vflat, rtol=0, atol=1e-10 * float((H @ vflat).abs().max()))

    # central differences of the gradient: (g(θ+εv) − g(θ−εv)) / 2ε, O(ε²) accurate
    eps, x, y = 1e-6, *batches[0]
    params = list(m.parameters())
    theta = [p.detach().clone() for p in params]

    def grad_at(sign):
        with torch.no_grad():
            for p, t0, d in zip(params, theta, v):
                p.copy_(t0 + sign * eps * d)
        m.eval()
        for blk in m.blocks:
            blk.attn.fused_attn = False
        gr = torch.autograd.grad(CE(m(x), y), params)
        return torch.cat([t.reshape(-1) for t in gr])

    try:
        fd = (grad_at(1) - grad_at(-1)) / (2 * eps)
    finally:
        with torch.no_grad():
            for p, t0 in zip(params, theta):
                p.copy_(t0)
        m.train()
        for blk in m.blocks:
            blk.attn.fused_attn = True
    assert float((fd - hv).norm() / hv.norm()) < 1e-6


def test_hvp_with_parameter_filter_is_the_diagonal_block(vit_case):
    m, batches, H, names, shapes = vit_case
    sizes = [s.numel() for s in shapes]
    start = sum(sizes[: names.index("head.weight")])
    idx = torch.arange(start, start + sizes[names.index("head.weight")] + sizes[names.index("head.bias")])
    v = torch.randn(len(idx), dtype=torch.float64)
    hv = torch.cat([t.reshape(-1) for t in hvp(m, CE, batches, v, params="head")])
    assert torch.allclose(hv, H[idx][:, idx] @ v, atol=1e-12)


# -- eigenvalues and trace of the tiny ViT: exact Hessian ---------------------------------------------


@pytest.mark.parametrize("method,tol", [("lanczos", 1e-3), ("power", 1e-7)])
def test_top2_of_tiny_vit_match_the_exact_hessian(vit_case, method, tol):
    m, batches, H, _, _ = vit_case
    ev, U = torch.linalg.eigh(H)
    order = ev.abs().argsort(descending=True)
    res = top_eigenvalues(m, CE, batches, k=2, method=method, tol=tol, max_iter=2000)
    assert res.converged and res.method == method
    for i in range(2):
        exact = float(ev[order[i]])
        assert abs(res.eigenvalues[i] - exact) <= 1e-3 * abs(exact), (i, res.eigenvalues, exact)
        u = torch.cat([t.reshape(-1) for t in res.eigenvectors[i]])
        assert abs(float(u.norm()) - 1) < 1e-10
        assert abs(float(u @ U[:, order[i]])) > 0.999
    if method == "lanczos":  # far fewer products than power iteration at the same tolerance
        assert res.products <= 30


def test_trace_of_tiny_vit(vit_case):
    m, batches, H, _, _ = vit_case
    tr = float(torch.trace(H))
    exact = hessian_trace(m, CE, batches, exact=True)
    assert exact.method == "exact" and exact.products == H.shape[0]
    assert abs(exact.estimate - tr) <= 1e-3 * abs(tr)
    assert abs(exact.estimate - tr) <= 1e-9 * abs(tr)  # it is exact, up to rounding
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for deflate in (0, 30):
            est = hessian_trace(m, CE, batches, tol=1e-3, max_iter=400, seed=5, deflate=deflate)
            assert est.samples == 400 and est.se > 0
            assert abs(est.estimate - tr) <= 4 * est.se, (deflate, est, tr)
    eig, summ = hessian_summary(m, CE, batches, k=2, tol=1e-6, trace_tol=1e-9, trace_max_iter=200)
    assert np.allclose(eig.eigenvalues, by_magnitude(torch.linalg.eigvalsh(H))[:2].numpy(), rtol=1e-6)
    assert summ.method == "hutchinson+deflation" and summ.samples == 200 and summ.products == eig.products + 200
    assert abs(summ.estimate - tr) <= 4 * summ.se
    loose = hessian_trace(m, CE, batches, tol=1e9, max_iter=400, seed=5, criterion="se", block=1)
    assert loose.converged and loose.samples == 10  # never fewer than min_samples
    plain = hessian_trace(m, CE, batches, tol=0.5, max_iter=400, seed=5, criterion="se", block=1)
    assert plain.converged and 10 < plain.samples < 400 and plain.se <= 0.5 * abs(plain.estimate)


# -- quadratics: ½θᵀAθ with known A --------------------------------------------------------------------


@pytest.mark.parametrize("method", ["lanczos", "power"])
def test_quadratic_with_dominant_negative_eigenvalue(method):
    A = sym_with_spectrum(SPECTRUM)
    m = Theta(torch.randn(20, dtype=torch.float64))
    res = top_eigenvalues(m, quad_loss, [(torch.zeros(1), A)], k=3, method=method, tol=1e-8, max_iter=500)
    assert res.converged
    assert np.allclose(res.eigenvalues, [-10.0, 6.0, 3.0], rtol=1e-5)  # sign kept, ordered by magnitude
    _, U = torch.linalg.eigh(A)
    assert abs(float(res.eigenvectors[0][0] @ U[:, 0])) > 1 - 1e-6  # eigenvector of −10


def test_lanczos_finds_a_repeated_top_eigenvalue():
    A = sym_with_spectrum([5.0, 5.0, 1.0, 0.5], seed=2)
    res = top_eigenvalues(Theta(torch.zeros(4, dtype=torch.float64)), quad_loss, [(torch.zeros(1), A)], k=2)
    assert np.allclose(res.eigenvalues, [5.0, 5.0])
    u, w = (r[0] for r in res.eigenvectors)
    assert abs(float(u @ w)) < 1e-8  # two orthogonal vectors of the same eigenspace


def test_trace_of_quadratic():
    A = sym_with_spectrum([10.0, 6.0, 3.0, 2.5, 1.0, 0.5, 0.25, -0.5, 0.1, 0.05] + [1.0] * 10, seed=1)
    m, batches = Theta(torch.zeros(20, dtype=torch.float64)), [(torch.zeros(1), A)]
    tr = float(torch.trace(A))
    assert abs(hessian_trace(m, quad_loss, batches, exact=True).estimate - tr) < 1e-12
    est = hessian_trace(m, quad_loss, batches, tol=2e-2, max_iter=5000, seed=0)
    assert est.converged and est.se <= 2e-2 * abs(est.estimate)
    assert abs(est.estimate - tr) <= 4 * est.se
    # Rademacher variance is 2·Σ_{i≠j} A_ij²: the reported SE must be that (not optimistic)
    var = 2 * float((A**2).sum() - (torch.diag(A) ** 2).sum())
    assert 0.7 < est.se / math.sqrt(var / est.samples) < 1.3
    # deflating a Krylov space that holds the outliers leaves almost nothing to sample
    defl = hessian_trace(m, quad_loss, batches, tol=2e-2, max_iter=5000, seed=0, deflate=12)
    assert abs(defl.estimate - tr) <= max(4 * defl.se, 1e-9) and defl.products < est.products / 5


def test_least_squares_hessian_is_2XtX_over_n():
    g = torch.Generator().manual_seed(0)
    X, y = torch.randn(50, 6, generator=g, dtype=torch.float64), torch.randn(50, 1, generator=g, dtype=torch.float64)
    X[:, 0] *= 4.0  # a clear top eigenvalue
    model = nn.Linear(6, 1).double()
    Xa = torch.cat([X, torch.ones(50, 1, dtype=torch.float64)], dim=1)  # weight then bias
    H = 2 * Xa.T @ Xa / 50
    ev = by_magnitude(torch.linalg.eigvalsh(H))
    batches = [(X[:20], y[:20]), (X[20:], y[20:])]  # two unequal batches: the mean over all 50 samples
    for method in ("lanczos", "power"):
        res = top_eigenvalues(model, nn.MSELoss(), batches, k=2, method=method, tol=1e-9, max_iter=1000)
        assert np.allclose(res.eigenvalues, ev[:2].numpy(), rtol=1e-6), method
    assert abs(hessian_trace(model, nn.MSELoss(), batches, exact=True).estimate - float(torch.trace(H))) < 1e-10
    est = hessian_trace(model, nn.MSELoss(), batches, tol=1e-2, max_iter=5000)
    assert abs(est.estimate - float(torch.trace(H))) <= 4 * est.se


# -- density, per block -------------------------------------------------------------------------------


def test_slq_with_a_full_krylov_space_recovers_the_spectrum():
    spectrum = [-3.0, -1.0, 0.5, 1.0, 2.0, 4.0, 7.0, 9.0]
    A = sym_with_spectrum(spectrum, seed=3)
    m, batches = Theta(torch.zeros(8, dtype=torch.float64)), [(torch.zeros(1), A)]
    d = eigen_density(m, quad_loss, batches, steps=8, runs=40, seed=1)
    assert d.products == 8 * 40
    for nodes, w in zip(d.nodes, d.weights):
        assert np.allclose(np.sort(nodes), spectrum, atol=1e-8) and abs(w.sum() - 1) < 1e-10 and (w >= 0).all()
    # Σ w·θ = q₀ᵀAq₀ = zᵀAz/n: its mean over Rademacher starts is tr(A)/n
    means = np.array([float(np.dot(w, x)) for x, w in zip(d.nodes, d.weights)])
    assert abs(means.mean() - np.mean(spectrum)) <= 4 * means.std(ddof=1) / math.sqrt(len(means))
    grid, dens = d.on_grid(num_points=4001)
    assert abs(np.trapezoid(dens, grid) - 1) < 1e-6
    assert abs(grid[np.argmax(dens)] - min(spectrum, key=lambda s: abs(grid[np.argmax(dens)] - s))) < 0.05


def test_per_block_results_match_the_exact_diagonal_blocks(vit_case):
    m, batches, H, names, shapes = vit_case
    blocks = {"head": "head", "block0": "blocks.0", "embed": ["cls_token", "pos_embed"]}
    df = per_block_sharpness(m, CE, batches, blocks=blocks, k=1, tol=1e-6, trace_tol=0.05, max_iter=300)
    sizes = np.cumsum([0] + [s.numel() for s in shapes])
    for b, prefixes in (("head", ["head"]), ("block0", ["blocks.0"]), ("embed", ["cls_token", "pos_embed"])):
        idx = torch.cat(
            [
                torch.arange(sizes[i], sizes[i + 1])
                for i, n in enumerate(names)
                if any(n == p or n.startswith(p + ".") for p in prefixes)
            ]
        )
        sub = H[idx][:, idx]
        lam = float(by_magnitude(torch.linalg.eigvalsh(sub))[0])
        rows = df[df.block == b].set_index("metric")
        assert int(rows.loc["eigenvalue", "n_params"]) == len(idx)
        assert abs(rows.loc["eigenvalue", "value"] - lam) <= 1e-4 * abs(lam)
        tr, se = rows.loc["trace", "value"], rows.loc["trace_se", "value"]
        assert abs(tr - float(torch.trace(sub))) <= max(4 * se, 1e-9 * abs(tr))


def test_default_blocks_split_repeated_blocks():
    m = tiny_vit(depth=3)
    blocks = default_blocks(m)
    assert [b for b in blocks if b.startswith("blocks")] == ["blocks.0", "blocks.1", "blocks.2"]
    assert {"patch_embed", "head", "cls_token", "pos_embed"} <= set(blocks)
    assert "head_drop" not in blocks  # no parameters


# -- side effects and bad input -----------------------------------------------------------------------


def test_no_side_effects_and_fused_attention_restored():
    m = tiny_vit().train()
    for blk in m.blocks:
        blk.attn.fused_attn = True
    x, y = torch.randn(4, 1, 8, 8), torch.randint(0, 3, (4,))
    seen = []

    def loss(out, t):
        seen.append((m.training, m.blocks[0].attn.fused_attn))
        return CE(out, t)

    before, rng = snapshot(m), torch.get_rng_state()
    top_eigenvalues(m, loss, [(x, y)], k=2)
    top_eigenvalues(m, loss, [(x, y)], k=2, method="power", max_iter=20)
    hessian_trace(m, loss, [(x, y)], tol=0.5, max_iter=20)
    eigen_density(m, loss, [(x, y)], steps=5)
    hvp(m, loss, [(x, y)], torch.ones(sum(p.numel() for p in m.parameters())), method="forward")
    per_block_sharpness(m, loss, [(x, y)], blocks={"head": "head"}, trace_max_iter=10)
    assert_bitwise(m, before)
    assert torch.equal(torch.get_rng_state(), rng)  # the global RNG was not drawn from
    assert set(seen) == {(False, False)}  # eval mode, eager attention during every product
    assert m.training and all(blk.attn.fused_attn for blk in m.blocks)

    def boom(out, t):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        top_eigenvalues(m, boom, [(x, y)])
    assert m.training and all(blk.attn.fused_attn for blk in m.blocks)


def test_bad_input_errors():
    m = tiny_vit()
    x, y = torch.randn(4, 1, 8, 8), torch.randint(0, 3, (4,))
    with pytest.raises(ValueError, match="not a scalar"):
        top_eigenvalues(m, nn.CrossEntropyLoss(reduction="none"), [(x, y)])
    with pytest.raises(ValueError, match="batches is empty"):
        hessian_trace(m, CE, [])
    with pytest.raises(ValueError, match="no samples"):
        top_eigenvalues(m, CE, [(x[:0], y[:0])])
    with pytest.raises(ValueError, match="larger than the number of selected parameters"):
        top_eigenvalues(m, CE, [(x, y)], k=4, params="head.bias")  # 3 parameters
    with pytest.raises(ValueError, match="larger than max_iter"):
        top_eigenvalues(m, CE, [(x, y)], k=5, max_iter=3)
    with pytest.raises(ValueError, match="at least one"):
        top_eigenvalues(m, CE, [(x, y)], k=0)
    with pytest.raises(ValueError, match="selects no trainable parameter"):
        top_eigenvalues(m, CE, [(x, y)], params="decoder")
    with pytest.raises(ValueError, match="method="):
        top_eigenvalues(m, CE, [(x, y)], method="arnoldi")
    with pytest.raises(ValueError, match="shaped like"):
        hvp(m, CE, [(x, y)], [torch.ones(3)])
    with pytest.raises(ValueError, match="exact trace needs"):
        hessian_trace(timm_small(), CE, [(torch.randn(1, 3, 32, 32), torch.zeros(1, dtype=torch.long))], exact=True)


def timm_small() -> nn.Module:
    """32k parameters: more than the exact trace takes."""
    return tiny_vit("rgb32", embed_dim=32, num_classes=3)


# -- real weights -------------------------------------------------------------------------------------


@pytest.mark.slow
def test_vit4mnist_lanczos_and_power_agree_on_lambda1():
    from helpers.realdata import load_mnist_test, load_vit4mnist, normalize

    model = load_vit4mnist()
    images, labels = load_mnist_test(32)
    batches = [(normalize(images), labels)]
    before = snapshot(model)
    lz = top_eigenvalues(model, CE, batches, k=2, method="lanczos", tol=1e-3)
    pw = top_eigenvalues(model, CE, batches, k=2, method="power", tol=1e-4, max_iter=300)
    assert lz.converged and pw.converged
    assert lz.eigenvalues[0] > 0  # a trained minimum: the sharpest direction curves upwards
    assert abs(lz.eigenvalues[0] - pw.eigenvalues[0]) <= 1e-3 * abs(lz.eigenvalues[0]), (lz, pw)
    assert abs(lz.eigenvalues[1] - pw.eigenvalues[1]) <= 1e-2 * abs(lz.eigenvalues[1]), (lz, pw)
    u, w = (torch.cat([t.reshape(-1) for t in r.eigenvectors[0]]) for r in (lz, pw))
    assert abs(float(u @ w)) > 0.99
    assert_bitwise(model, before)
