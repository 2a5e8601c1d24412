"""Loss landscapes (paper Sec. 4, Fig. 7a/b/d/e): the centre is the plain loss, the
curvature along the top eigenvectors is λ₁ and λ₂ (finite differences), a quadratic gives its exact
surface, filter-normalised random directions, the registered probes through a duck-typed context, and
parameters restored bit for bit — also when the loss raises half-way."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from helpers.models import tiny_vit
from maskdistill.probes import ProbeResult, get_probe
from maskdistill.probes.curvature.landscape import loss_landscape_2d, random_directions

CE = nn.CrossEntropyLoss()


def batch(dtype=torch.float64, n=6):
    g = torch.Generator().manual_seed(1)
    return [(torch.randn(n, 1, 8, 8, generator=g, dtype=dtype), torch.randint(0, 3, (n,), generator=g))]


def snapshot(m):
    return {k: v.detach().clone() for k, v in m.state_dict().items()}


def same(m, before) -> bool:
    return all(torch.equal(m.state_dict()[k], v) for k, v in before.items())


def test_centre_is_the_plain_loss_and_curvature_along_eigenvectors_is_lambda():
    m, batches = tiny_vit(dtype=torch.float64), batch()
    before = snapshot(m)
    m.eval()
    for blk in m.blocks:
        blk.attn.fused_attn = False
    plain = float(CE(m(batches[0][0]), batches[0][1]))
    m.train()
    for blk in m.blocks:
        blk.attn.fused_attn = True

    big = loss_landscape_2d(m, CE, batches, directions="random", grid=21, span=0.5)
    assert big.loss.shape == (21, 21) and big.loss[10, 10] == plain  # bit for bit: θ itself
    assert np.isclose(big.alpha[0], -0.5) and np.isclose(big.alpha[-1], 0.5) and big.alpha[10] == 0.0
    assert np.ptp(big.loss) > 0.01  # the directions do move the loss

    h = 1e-4
    ls = loss_landscape_2d(m, CE, batches, directions="hessian", grid=3, span=h, tol=1e-8)
    lam1, lam2 = ls.eigenvalues
    assert ls.loss[1, 1] == plain
    curv1 = (ls.loss[2, 1] - 2 * ls.loss[1, 1] + ls.loss[0, 1]) / h**2
    curv2 = (ls.loss[1, 2] - 2 * ls.loss[1, 1] + ls.loss[1, 0]) / h**2
    assert abs(curv1 - lam1) <= 1e-4 * abs(lam1), (curv1, lam1)
    assert abs(curv2 - lam2) <= 1e-4 * abs(lam2), (curv2, lam2)
    # the mixed difference vanishes: v1 and v2 are orthogonal eigenvectors (v1ᵀHv2 = 0)
    mixed = (ls.loss[2, 2] - ls.loss[2, 0] - ls.loss[0, 2] + ls.loss[0, 0]) / (4 * h**2)
    assert abs(mixed) <= 1e-3 * abs(lam1)
    assert ls.products > 0 and same(m, before)
    assert m.training and all(b.attn.fused_attn for b in m.blocks)


class Theta(nn.Module):
    def __init__(self, n: int):
        super().__init__()
        self.theta = nn.Parameter(torch.zeros(n, dtype=torch.float64))

    def forward(self, x):
        return self.theta


def test_quadratic_surface_is_exact():
    g = torch.Generator().manual_seed(0)
    Q, _ = torch.linalg.qr(torch.randn(6, 6, generator=g, dtype=torch.float64))
    spectrum = torch.tensor([-4.0, 3.0, 1.0, 0.5, 0.2, 0.1], dtype=torch.float64)
    A = Q @ torch.diag(spectrum) @ Q.T
    ls = loss_landscape_2d(Theta(6), lambda t, a: 0.5 * t @ a @ t, [(torch.zeros(1), A)], grid=5, span=0.5)
    assert np.allclose(ls.eigenvalues, [-4.0, 3.0])
    a, b = np.meshgrid(ls.alpha, ls.beta, indexing="ij")
    assert np.allclose(ls.loss, 0.5 * (-4.0 * a**2 + 3.0 * b**2), atol=1e-12)  # at θ = 0
    df = ls.to_frame()
    assert list(df.columns) == ["alpha", "beta", "metric", "value"] and len(df) == 25
    assert np.isclose(df[(df.alpha == 0.5) & (df.beta == 0.0)].value.item(), -0.5)  # ½·(−4)·0.5²
    centre = ls.centre()
    assert centre["centre_loss"] == 0.0 and centre["centre_is_minimum"] is False  # a saddle
    assert np.isclose(centre["grid_min_loss"], -0.5)
    bowl = loss_landscape_2d(Theta(6), lambda t, a: 0.5 * t @ a @ t, [(torch.zeros(1), A @ A)], grid=5, span=0.5)
    assert bowl.centre()["centre_is_minimum"] is True and bowl.centre()["centre_loss"] == 0.0


def test_random_directions_are_filter_normalised_and_seeded():
    m = tiny_vit()
    d1, d2 = random_directions(m, seed=3)
    again = random_directions(m, seed=3)[0]
    other = random_directions(m, seed=4)[0]
    assert all(torch.equal(a, b) for a, b in zip(d1, again))
    assert not all(torch.equal(a, b) for a, b in zip(d1, other))
    for (name, p), u, w in zip(m.named_parameters(), d1, d2):
        if p.ndim <= 1:
            assert not u.any() and not w.any(), name  # biases and norm weights zeroed
        else:
            rows = u.reshape(p.shape[0], -1).norm(dim=1)
            assert torch.allclose(rows, p.detach().reshape(p.shape[0], -1).norm(dim=1), rtol=1e-5), name
    head = random_directions(m, params="head", seed=0)[0]
    assert len(head) == 2 and head[0].shape == m.head.weight.shape


def test_parameters_restored_when_the_loss_raises():
    m = tiny_vit().train()
    before, calls = snapshot(m), []

    def flaky(out, y):
        calls.append(1)
        if len(calls) == 7:
            raise RuntimeError("flaky loss")
        return CE(out, y)

    with pytest.raises(RuntimeError, match="flaky"):
        loss_landscape_2d(m, flaky, batch(torch.float32), directions="random", grid=5)
    assert same(m, before) and m.training and all(b.attn.fused_attn for b in m.blocks)


def test_bad_directions():
    m, batches = tiny_vit(), batch(torch.float32)
    with pytest.raises(ValueError, match="directions="):
        loss_landscape_2d(m, CE, batches, directions="pca")
    with pytest.raises(ValueError, match="shaped like"):
        loss_landscape_2d(m, CE, batches, directions=[[torch.ones(2)], [torch.ones(2)]])
    with pytest.raises(ValueError, match="two directions"):
        loss_landscape_2d(m, CE, batches, directions=[random_directions(m)[0]])


class Ctx:
    """The minimal probe context the Hessian probes document."""

    def __init__(self):
        self.model, self.device, self.name = tiny_vit(), torch.device("cpu"), "tiny"
        self.calls = []

    def labelled_batches(self, n_batches, batch_size):
        self.calls.append((n_batches, batch_size))
        g = torch.Generator().manual_seed(2)
        return [
            (torch.randn(batch_size, 1, 8, 8, generator=g), torch.randint(0, 3, (batch_size,), generator=g))
            for _ in range(n_batches)
        ]


def test_registered_probes_save_and_load(tmp_path):
    ctx = Ctx()
    before = snapshot(ctx.model)
    land = get_probe("loss_landscape_2d").fn(ctx, grid=5, span=0.2, batch_size=4)
    eigs = get_probe("hessian_top_eigs").fn(ctx, k=2, batch_size=4, per_block=True)
    trace = get_probe("hessian_trace").fn(ctx, tol=0.2, max_iter=100, batch_size=4)
    dens = get_probe("hessian_density").fn(ctx, steps=10, batch_size=4, num_points=200)
    assert same(ctx.model, before) and ctx.calls == [(1, 4)] * 4
    for res in (land, eigs, trace, dens):
        res.save(tmp_path)
        back = ProbeResult.load(tmp_path, res.probe)
        assert back.model == "tiny" and len(back.table) == len(res.table)
    ev = eigs.table[(eigs.table.block == "all") & (eigs.table.metric == "eigenvalue")].value.to_numpy()
    assert np.allclose(ev, land.meta["eigenvalues"], rtol=1e-3)  # same batch, same seed
    assert {"blocks", "head", "patch_embed"} <= set(eigs.table.block)  # per-block rows
    assert land.arrays["loss"].shape == (5, 5) and eigs.meta["label_smoothing"] == 0.0
    t = trace.table.set_index("metric").value
    assert t["trace_ci95_low"] < t["trace"] < t["trace_ci95_high"]
    grid = dens.table.eigenvalue.to_numpy()
    assert abs(np.trapezoid(dens.table.value.to_numpy(), grid) - 1) < 1e-3
    assert dens.arrays["nodes"].shape == (1, 10)


def test_figures_from_saved_results(tmp_path):
    from maskdistill.report.plots import hessian as hp
    from maskdistill.report.registry import figures

    ctx = Ctx()
    saved = []
    for name, params in (
        ("loss_landscape_2d", dict(grid=5, span=0.2)),
        ("hessian_top_eigs", dict(per_block=True)),
        ("hessian_trace", dict(tol=0.3, max_iter=50)),
        ("hessian_density", dict(steps=8)),
    ):
        get_probe(name).fn(ctx, batch_size=4, **params).save(tmp_path / "tiny")
        saved.append(name)
    figdir = tmp_path / "fig"
    for name, plot in (
        ("loss_landscape_2d", hp.plot_loss_landscape),
        ("hessian_top_eigs", hp.plot_top_eigenvalues),
        ("hessian_trace", hp.plot_trace),
        ("hessian_density", hp.plot_eigen_density),
    ):
        res = ProbeResult.load(tmp_path / "tiny", name)
        paths = plot([res, res.__class__(res.probe, "other", res.table, res.meta, res.arrays)], figdir / name)
        assert [p.suffix for p in paths] == [".png", ".pdf"] and all(p.stat().st_size > 1000 for p in paths)
    registered = {f.probe for f in figures() if f.section == "geometry"}
    assert registered == set(saved)


def test_probes_run_on_the_real_probe_context():
    from maskdistill.data.analysis_data import parse_data
    from maskdistill.data.synthetic import SHAPES
    from maskdistill.models.spec import describe_model
    from maskdistill.probes.core.context import ProbeContext
    from maskdistill.probes.curvature.hessian import top_eigenvalues

    model = tiny_vit("rgb32", depth=1)
    info = describe_model(model, "tiny", "tiny", overrides={"img_size": 32, "classes": list(SHAPES)})
    ctx = ProbeContext(
        "tiny", model, info, parse_data("builtin:val?size=32"), images=8, batch_size=8, label_smoothing=0.1
    )
    res = get_probe("hessian_top_eigs").fn(ctx, k=2)
    batches = ctx.labelled_batches(1, 8)
    ref = top_eigenvalues(model, nn.CrossEntropyLoss(label_smoothing=0.1), batches, k=2, seed=0)
    got = res.table[res.table.metric == "eigenvalue"].value.to_numpy()
    assert np.allclose(got, ref.eigenvalues, rtol=1e-6)
    assert res.meta["label_smoothing"] == 0.1 and res.meta["spec"] == ctx.spec and res.meta["images"] == 8


def test_spread_over_batches_and_the_not_converged_flag(tmp_path):
    from maskdistill.probes.curvature.hessian import top_eigenvalues
    from maskdistill.report.plots import hessian as hp

    ctx = Ctx()
    ctx.memo = {}
    eigs = get_probe("hessian_top_eigs").fn(ctx, n_batches=2, batch_size=4)
    t = eigs.table
    per = t[t.metric == "eigenvalue_batch"].sort_values(["batch", "index"]).value.to_numpy().reshape(2, 2)
    for b, (x, y) in enumerate(ctx.labelled_batches(2, 4)):  # each batch alone, same solver and seed
        assert np.allclose(per[b], top_eigenvalues(ctx.model, CE, [(x, y)], k=2, seed=0).eigenvalues, rtol=1e-5)
    std = t[t.metric == "eigenvalue_batch_std"].sort_values("index").value.to_numpy()
    assert np.allclose(std, per.std(axis=0, ddof=1)) and np.all(std > 0)
    trace = get_probe("hessian_trace").fn(ctx, n_batches=2, batch_size=4, tol=0.3, max_iter=60)
    assert (trace.table.metric == "trace_batch").sum() == 2 and (trace.table.metric == "trace_batch_std").sum() == 1
    land = get_probe("loss_landscape_2d").fn(ctx, n_batches=2, batch_size=4, grid=3)
    assert np.allclose(land.meta["eigenvalues"], t[t.metric == "eigenvalue"].value)  # the shared run
    assert land.meta["centre_loss"] == land.arrays["loss"][1, 1] and "centre_is_minimum" in land.meta
    stopped = get_probe("hessian_top_eigs").fn(Ctx(), batch_size=4, max_iter=2, k=2)
    assert stopped.meta["converged"] is False
    assert hp._label("m", stopped) == "m (not converged)" and hp._label("m", eigs) == "m"
    paths = hp.plot_top_eigenvalues([stopped, eigs.__class__(eigs.probe, "b", eigs.table, eigs.meta)], tmp_path / "e")
    assert all(p.stat().st_size > 1000 for p in paths)
