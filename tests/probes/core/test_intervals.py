"""The bootstrap over images behind every interval: nominal coverage on data with a known mean, the
paired interval of a difference narrower than the unpaired one on correlated data, deterministic
resamples shared by every model with the same number of images and seed, and the intervals the
attention and representation probes attach (the analytic uniform-attention case, rows aligned with
the per-image values, identical models giving a zero paired delta)."""

from __future__ import annotations

import math
from functools import partial

import numpy as np
import pytest

from helpers.models import tiny_vit
from maskdistill.data.analysis_data import parse_data
from maskdistill.models.spec import describe_model
from maskdistill.probes import get_probe
from maskdistill.probes.core.context import ProbeContext
from maskdistill.probes.core.intervals import Bootstrap, array_key, paired, replicates
from maskdistill.probes.representation.attention_accumulators import ATTENTION

grid14_vit = partial(tiny_vit, "grid14", eval_mode=True)


def test_the_interval_covers_a_known_mean_at_about_the_nominal_rate():
    covered, widths = 0, []
    for seed in range(100):
        x = np.random.default_rng(1000 + seed).normal(1.0, 2.0, size=120)
        boot = Bootstrap(replicates=500, seed=seed)
        lo, hi = boot.interval(boot.means(x))
        covered += int(lo <= 1.0 <= hi)
        widths.append(hi - lo)
    assert 90 <= covered <= 99
    # the width is that of a 95% normal interval of the mean: 2 * 1.96 * sigma / sqrt(n)
    assert np.mean(widths) == pytest.approx(2 * 1.96 * 2.0 / math.sqrt(120), rel=0.1)


def test_the_paired_interval_of_a_difference_is_narrower_on_correlated_data():
    rng = np.random.default_rng(0)
    shared = rng.normal(0.0, 1.0, 200)  # what both models see in the same image
    a, b = shared + rng.normal(0, 0.1, 200), shared + 0.1 + rng.normal(0, 0.1, 200)
    same = Bootstrap(seed=7)
    lo_p, hi_p = same.interval(same.means(b) - same.means(a))  # the same resamples for both
    lo_u, hi_u = same.interval(Bootstrap(seed=8).means(b) - same.means(a))  # independent resamples
    assert lo_p < 0.1 < hi_p and lo_p > 0  # paired: the shift is resolved
    assert lo_u < 0 < hi_u  # unpaired: lost in the image-to-image spread
    assert (hi_p - lo_p) < 0.2 * (hi_u - lo_u)


def test_resamples_depend_on_seed_and_count_only_and_come_in_consistent_chunks():
    boot = Bootstrap(replicates=300, seed=3)
    counts = boot.counts(17)
    assert counts.shape == (300, 17) and (counts.sum(1) == 17).all() and counts.min() >= 0
    np.testing.assert_array_equal(counts, Bootstrap(replicates=300, seed=3).counts(17))
    assert not np.array_equal(counts, Bootstrap(replicates=300, seed=4).counts(17))
    np.testing.assert_array_equal(np.concatenate(list(boot.count_chunks(17, chunk=64))), counts)
    # a mean through statistic() equals the fast matrix path
    x = np.arange(17.0)
    np.testing.assert_allclose(boot.statistic(17, lambda w: w @ x / 17), boot.means(x))
    with pytest.raises(ValueError, match="at least 2"):
        Bootstrap(replicates=1)
    with pytest.raises(ValueError, match="between 0 and 1"):
        Bootstrap(level=95)


def _ctx(model, images: int, seed: int = 0, **kw) -> ProbeContext:
    info = describe_model(model, "tiny", "tiny", overrides={"img_size": model.patch_embed.img_size[0]})
    data = parse_data("builtin:val?size=32")
    return ProbeContext("tiny", model, info, data, images=images, batch_size=4, seed=seed, **kw)


def test_uniform_attention_has_a_zero_width_interval_at_the_analytic_value():
    res = get_probe("attention_distance").fn(_ctx(grid14_vit(attention="uniform"), images=6))
    layer = res.table[res.table.metric == "attention_distance_layer_mean"]
    np.testing.assert_allclose(layer[["ci_low", "value", "ci_high"]].to_numpy(), 116.492 / 4, atol=2e-3)
    assert res.meta["bootstrap"]["n"] == 6 and res.meta["bootstrap"]["replicates"] == 1000


def test_probe_intervals_follow_their_rows_and_pair_up_between_models():
    model = grid14_vit(attention="peaked", seed=5)
    ctx = _ctx(model, images=10)
    ent = get_probe("attention_entropy").fn(ctx)
    values = ctx.memo["shared"].group(ATTENTION).per_image["entropy"]  # (images, depth, heads)
    assert values.shape == (10, 2, 2)
    t = ent.table
    rows = t[t.metric == "attention_entropy"]
    for r in rows.itertuples():  # each per-head row's interval is the bootstrap of its own images' values
        lo, hi = ctx.bootstrap.interval(ctx.bootstrap.means(values[:, r.layer - 1, int(r.head)]))
        assert (r.ci_low, r.ci_high) == pytest.approx((lo, hi), rel=1e-5)
        assert r.value == pytest.approx(values[:, r.layer - 1, int(r.head)].mean(), rel=1e-5)
        assert r.ci_low < r.value < r.ci_high
    spread = t[t.metric == "attention_entropy_head_std"].sort_values("layer")
    np.testing.assert_allclose(spread["value"], values.mean(0).std(-1), rtol=1e-5)
    assert replicates(ent, "attention_entropy_head_std").shape == (1000, 2)
    # the same model on the same images: identical resamples, a paired delta of exactly zero
    again = get_probe("attention_entropy").fn(_ctx(model, images=10))
    assert paired(ent.meta, again.meta)
    key = array_key("attention_entropy_layer_mean")
    np.testing.assert_array_equal(ent.arrays[key], again.arrays[key])
    # another seed picks other resamples: not paired
    other = get_probe("attention_entropy").fn(_ctx(model, images=10, seed=1))
    assert not paired(ent.meta, other.meta)


def test_no_bootstrap_leaves_the_intervals_empty():
    res = get_probe("feature_fourier").fn(_ctx(grid14_vit(seed=2), images=4, bootstrap=None))
    assert res.table["ci_low"].isna().all() and not any(k.startswith("bootstrap.") for k in res.arrays)
    assert res.meta["intervals"] == "none (--bootstrap 0)"
