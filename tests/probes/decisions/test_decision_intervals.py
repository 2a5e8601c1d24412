"""Bootstrap intervals of the decision numbers: shape bias against a hand computation on a fixed tiny
case, the probe's saved interval, and the error-consistency statistic against the point estimate."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from tests.helpers.models import tiny_vit

from maskdistill.data.synthetic import SHAPES
from maskdistill.models.spec import describe_model
from maskdistill.probes.core.intervals import Bootstrap, array_key
from maskdistill.probes.core.registry import get_probe
from maskdistill.probes.decisions.intervals import consistency_statistic, shape_bias_replicates
from maskdistill.probes.decisions.ood_summary import drop_excluded, excluded_conditions, pairwise_consistency, summarise
from maskdistill.probes.decisions.responses import make_responses

# trial: shape, texture, decision -- shape (S), texture (T), neither (N), agreeing cues (dropped)
TRIALS = [
    ("cat", "dog", "cat"),  # S
    ("dog", "car", "car"),  # T
    ("car", "cat", "car"),  # S
    ("cat", "car", "bird"),  # N
    ("bird", "cat", "cat"),  # T
    ("dog", "dog", "dog"),  # agreeing: neither a shape nor a texture trial
    ("car", "bird", "car"),  # S
]


def _conflict_responses() -> pd.DataFrame:
    ids = [f"{s}{i}-{t}{i}.png" for i, (s, t, _) in enumerate(TRIALS)]
    return make_responses("m", "cue-conflict", [s for s, _, _ in TRIALS], ["0"] * 7, ids, [d for *_, d in TRIALS])


def test_shape_bias_replicates_match_a_hand_computation():
    boot = Bootstrap(replicates=64, seed=5)
    reps = shape_bias_replicates(_conflict_responses(), ["all", "cat"], boot)
    counts = boot.counts(len(TRIALS))
    for r in range(boot.replicates):
        s = t = conflict = correct = 0.0
        s_cat = t_cat = 0.0
        for c, (shape, texture, decision) in zip(counts[r], TRIALS):
            correct += c * (decision == shape)
            if shape == texture:
                continue
            conflict += c
            s += c * (decision == shape)
            t += c * (decision == texture)
            if shape == "cat":
                s_cat += c * (decision == shape)
                t_cat += c * (decision == texture)
        assert reps["shape_bias"][r, 0] == pytest.approx(s / (s + t))
        assert reps["fraction_texture"][r, 0] == pytest.approx(t / conflict)
        assert reps["accuracy"][r, 0] == pytest.approx(correct / 7)
        cat = reps["shape_bias"][r, 1]
        assert np.isnan(cat) if s_cat + t_cat == 0 else cat == pytest.approx(s_cat / (s_cat + t_cat))
    lo, hi = boot.interval(reps["shape_bias"][:, 0])
    assert lo <= 0.6 <= hi and lo < hi  # the value: 3 shape of 5 shape-or-texture decisions


def test_shape_bias_probe_saves_an_interval_that_covers_its_value():
    model = tiny_vit("rgb32", depth=1, num_classes=10)
    info = describe_model(model, "tiny", "tiny", overrides={"img_size": 32, "classes": list(SHAPES)})
    boot = Bootstrap(replicates=200, seed=0)
    ctx = SimpleNamespace(model=model, info=info, name="tiny", bootstrap=boot)
    res = get_probe("shape_bias").fn(ctx, stimuli="builtin", builtin_images=90)
    t = res.table
    rows = t[t.metric == "shape_bias"]
    assert res.arrays[array_key("shape_bias")].shape == (200, len(rows))
    for r in rows.itertuples():
        if not np.isnan(r.value):
            assert r.ci_low <= r.value <= r.ci_high
    assert res.meta["bootstrap"]["n"] == 90 and res.meta["bootstrap"]["unit"] == "stimulus"
    assert res.meta["label_map"] == "by name"


def _trials(subj, correct, condition):
    n = len(correct)
    dec = ["cat" if c else "dog" for c in correct]
    return make_responses(
        subj, "contrast", ["cat"] * n, [condition] * n, [f"{condition}_{i}.png" for i in range(n)], dec
    )


def test_error_consistency_statistic_equals_the_summary_for_kept_trials():
    rng = np.random.default_rng(3)
    conds = (("c100", 0.9), ("c10", 0.6), ("c05", 0.5), ("c01", 0.05))
    people = {s: pd.concat([_trials(s, rng.random(30) < p, c) for c, p in conds]) for s in ("subject-01", "subject-02")}
    humans = pd.concat(people.values(), ignore_index=True)
    model = pd.concat([_trials("net", rng.random(30) < p, c) for c, p in conds], ignore_index=True)
    excluded = excluded_conditions(humans, ["contrast"])
    kept = drop_excluded(humans, excluded)

    def summary(resp):
        pairs = pairwise_consistency(resp, humans)
        s = summarise(pairs, pd.concat([resp, humans], ignore_index=True), excluded).set_index("observer")
        return s.loc["net", "error_consistency"]

    weights = np.ones((1, len(model)))
    assert consistency_statistic(model, kept, weights)[0] == pytest.approx(summary(model))
    subset = rng.random(len(model)) < 0.6  # 0/1 weights: the same as the model answering only those trials
    got = consistency_statistic(model, kept, subset[None, :].astype(float))[0]
    assert got == pytest.approx(summary(model.loc[subset]))
