"""Uncertainty and honesty of the curvature probes (paper Sec. 4, Fig. 7): residual bounds that hold
exact eigenvalues even when a solver stops early, probe intervals (read back from the saved CSV)
covering the exact Hessian's eigenvalues and trace, and early stops flagged in the CSV and meta."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from maskdistill.probes.curvature.hessian import top_eigenvalues
from probes.curvature.cases import SPECTRUM, Theta, by_magnitude, quad_loss, sym_with_spectrum

# -- uncertainty and honesty: intervals against exact values, unconverged runs flagged -----------------


@pytest.mark.parametrize("method,max_iter", [("lanczos", 4), ("lanczos", 7), ("power", 6)])
def test_residual_bounds_contain_exact_eigenvalues(method, max_iter):
    """Stopped early (not converged) the Ritz values are off, but each residual bound still holds an
    eigenvalue of A; the top one's interval holds λ1 itself."""
    A = sym_with_spectrum(SPECTRUM)
    exact = np.asarray(SPECTRUM)
    m = Theta(torch.randn(20, dtype=torch.float64))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = top_eigenvalues(m, quad_loss, [(torch.zeros(1), A)], k=2, method=method, tol=1e-12, max_iter=max_iter)
    assert not res.converged and len(res.residuals) == 2
    for v, r in zip(res.eigenvalues, res.residuals):
        assert r > 1e-6  # a real, non-trivial bound
        assert np.any(np.abs(exact - v) <= r * (1 + 1e-12)), (v, r)
    assert abs(res.eigenvalues[0] - (-10.0)) <= res.residuals[0]
    tight = top_eigenvalues(m, quad_loss, [(torch.zeros(1), A)], k=2, tol=1e-9, max_iter=50)
    assert tight.converged and max(tight.relative_residuals) <= 1e-9
    assert all(abs(v - e) <= r + 1e-12 for v, e, r in zip(tight.eigenvalues, [-10.0, 6.0], tight.residuals))


class VitCtx:
    """A probe context over the tiny float64 ViT and batch whose exact Hessian ``vit_case`` holds."""

    def __init__(self, case):
        self.model, self.batches = case[0], case[1]
        self.device, self.name, self.memo = torch.device("cpu"), "vit", {}

    def labelled_batches(self, n_batches, batch_size):
        return self.batches[:n_batches]


def test_probe_intervals_cover_the_exact_values(vit_case, tmp_path):
    from maskdistill.probes import ProbeResult, get_probe

    H = vit_case[2]
    ctx = VitCtx(vit_case)
    eigs = get_probe("hessian_top_eigs").fn(ctx)
    trace = get_probe("hessian_trace").fn(ctx, tol=0.2, max_iter=300)  # an indefinite H: tr ≪ Σ|λ|
    for res in (eigs, trace):
        res.save(tmp_path)
    eigs, trace = (ProbeResult.load(tmp_path, r.probe) for r in (eigs, trace))  # what the CSV says
    e = eigs.table.set_index(["metric", "index"])
    exact = by_magnitude(torch.linalg.eigvalsh(H))[:2].numpy()
    for i in range(2):
        lo, hi = e.loc[("eigenvalue", i), ["ci_low", "ci_high"]]
        assert lo <= exact[i] <= hi and hi - lo <= 2e-3 * abs(exact[i])
    assert e.loc[("converged", 0), "value"] == 1 and eigs.meta["converged"] is True
    assert eigs.meta["tolerance_reached"] <= eigs.meta["tolerance"] == 1e-3
    t = trace.table.set_index("metric")
    tr = float(torch.trace(H))
    assert t.loc["converged", "value"] == 1 and trace.meta["converged"] is True
    assert t.loc["tolerance_reached", "value"] <= 0.2 and trace.meta["tolerance"] == 0.2
    assert t.loc["trace", "ci_low"] <= tr <= t.loc["trace", "ci_high"]
    assert np.isclose(t.loc["trace", "ci_low"], t.loc["trace_ci95_low", "value"])
    # the trace reused the eigenvalues' Lanczos run: its products include that run's, counted once
    assert trace.meta["products"] == trace.meta["samples"] + eigs.meta["products"]
    assert sum(k.startswith("curvature.top") for k in ctx.memo) == 1


def test_probes_stopped_early_say_so(vit_case, tmp_path):
    from maskdistill.probes import ProbeResult, get_probe

    ctx = VitCtx(vit_case)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        eigs = get_probe("hessian_top_eigs").fn(ctx, max_iter=3)
        trace = get_probe("hessian_trace").fn(ctx, tol=1e-6, max_iter=12, deflate=0)
    for res in (eigs, trace):
        res.save(tmp_path)
        back = ProbeResult.load(tmp_path, res.probe)
        t = back.table.set_index("metric")["value"]
        assert t["converged"] == 0 and back.meta["converged"] is False
        assert t["tolerance_reached"] > t["tolerance"] == back.meta["tolerance"]
        assert back.meta["products"] <= back.meta["budget"]
    assert eigs.meta["budget"] == 3 and trace.meta["budget"] == 12 and trace.meta["samples"] == 12
