"""The claims table on hand-made results: the layer groups (first and last third of the blocks), the
three-valued verdicts from the delta's interval ("holds" / "contradicted" / "inconclusive"), the
paired bootstrap of two models that saw the same images, the curvature bounds, unconverged solvers,
and the "slightly" bound of the lower-layer NMI claim."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from maskdistill.probes.core.intervals import Bootstrap, array_key
from maskdistill.probes.core.registry import ProbeResult
from maskdistill.report.claims import CLAIMS, Claim, layer_groups, register_claim
from maskdistill.report.verdicts import evaluate, evaluate_pair
from report.saved_results import per_layer

B = 400
Z = np.random.default_rng(0).standard_normal((B, 1))  # shared by both models: their resamples pair up
META = {"bootstrap": Bootstrap(B).describe(16), "data": "builtin:val", "seed": 0, "images_requested": 16}


def _with_reps(res: ProbeResult, metric: str, spread: float, noise: float = 0.0, seed: int = 1) -> ProbeResult:
    """Give ``res`` bootstrap replicates of ``metric``: its values + spread x a shared normal draw
    (+ noise x a draw of its own)."""
    values = res.table.loc[res.table.metric == metric, "value"].to_numpy()
    own = np.random.default_rng(seed).standard_normal((B, len(values)))
    res.arrays[array_key(metric)] = values[None, :] + spread * Z + noise * own
    return res


def _results(teacher: dict, student: dict, spread: float = 0.01, noise: float = 0.0) -> dict:
    """{model: {probe: result}} from {probe: (metric, {layer: value}, meta)} per model, with replicates."""
    out = {}
    for i, (model, probes) in enumerate((("teacher", teacher), ("student", student))):
        out[model] = {
            p: _with_reps(per_layer(p, model, metric, values, **META, **meta), metric, spread, noise, seed=i)
            for p, (metric, values, meta) in probes.items()
        }
    return out


def _nmi(values: dict) -> tuple:
    return ("attention_nmi_layer_mean", values, {})


def _by_claim(table) -> dict:
    return {row.claim: row for row in table.itertuples()}


def test_layer_groups_are_the_first_and_last_third():
    assert layer_groups(12) == ([1, 2, 3, 4], [9, 10, 11, 12])
    assert layer_groups(3) == ([1], [3])
    assert layer_groups(1) == ([1], [1])  # k is at least one block
    with pytest.raises(ValueError, match="at least one block"):
        layer_groups(0)


def test_verdicts_with_their_numbers_and_intervals():
    results = _results(
        {
            "attention_distance": ("attention_distance_layer_mean", {1: 40.0, 2: 60.0, 3: 80.0}, {}),
            "attention_nmi": _nmi({1: 0.30, 2: 0.20, 3: 0.10}),
            "token_singular_values": ("mean_relative_log_singular_value", {0: 0.0, 1: -1.0, 2: -2.0, 3: -3.0}, {}),
            "image_singular_values": ("mean_relative_log_singular_value", {1: -1.0, 3: -1.0}, {"of": "covariance"}),
        },
        {
            "attention_distance": ("attention_distance_layer_mean", {1: 30.0, 2: 40.0, 3: 50.0}, {}),
            "attention_nmi": _nmi({1: 0.28, 2: 0.25, 3: 0.30}),
            "token_singular_values": ("mean_relative_log_singular_value", {0: 0.0, 1: -1.0, 2: -2.0, 3: -4.0}, {}),
            "image_singular_values": ("mean_relative_log_singular_value", {1: -1.0, 3: 0.0}, {"of": "gram"}),
        },
    )
    results["student"]["feature_fourier"] = per_layer("feature_fourier", "student", "x", {1: 0.0})
    table = evaluate_pair("teacher", "student", results)
    rows = _by_claim(table)
    # claims of probes neither model ran are left out; one model's result alone is "not measured"
    assert set(table.probe) == {
        "attention_distance",
        "attention_nmi",
        "token_singular_values",
        "image_singular_values",
        "feature_fourier",
    }
    distance = rows["MD lowers the average attention distance in the top layers"]
    assert (distance.teacher_value, distance.student_value, distance.delta) == (80.0, 50.0, -30.0)
    assert (distance.teacher_layers, distance.student_layers, distance.verdict) == ("3-3 of 3", "3-3 of 3", "holds")
    # the same shared draw for both models: their replicate-wise difference is exactly the delta
    assert distance.delta_ci_low == pytest.approx(-30.0) and distance.delta_ci_high == pytest.approx(-30.0)
    assert distance.interval == "paired bootstrap" and distance.images == ""
    lower = rows["MD raises the average attention distance in the lower layers"]
    assert lower.delta == pytest.approx(-10.0) and lower.verdict == "contradicted"
    top = rows["MD raises NMI in the top layers"]
    assert top.delta == pytest.approx(0.2) and top.verdict == "holds"
    slight = rows["MD lowers NMI slightly in the lower layers"]
    assert slight.delta == pytest.approx(-0.02) and slight.teacher_layers == "1-1 of 3" and slight.verdict == "holds"
    token = rows["MD raises the top-layer token-level relative singular values (less folding)"]
    assert token.delta == pytest.approx(-1.0) and token.verdict == "contradicted"
    image = rows["MD raises the top-layer image-level relative singular values (less folding)"]
    assert image.verdict == "not comparable (of=covariance vs of=gram)" and math.isnan(image.delta)
    fourier = [r for c, r in rows.items() if c.startswith("MD increases the low-frequency preference")][0]
    assert fourier.verdict == "not measured (run feature_fourier on both models)"


def test_a_verdict_turns_inconclusive_when_its_interval_crosses_zero():
    teacher = {"attention_nmi": _nmi({1: 0.30, 2: 0.20, 3: 0.10})}
    student = {"attention_nmi": _nmi({1: 0.30, 2: 0.20, 3: 0.12})}
    tight = _by_claim(evaluate_pair("teacher", "student", _results(teacher, student, noise=0.001)))
    top = tight["MD raises NMI in the top layers"]
    assert top.verdict == "holds" and 0 < top.delta_ci_low < 0.02 < top.delta_ci_high
    wide = _by_claim(evaluate_pair("teacher", "student", _results(teacher, student, noise=0.05)))
    top = wide["MD raises NMI in the top layers"]
    assert top.delta == pytest.approx(0.02) and top.delta_ci_low < 0 < top.delta_ci_high
    assert top.verdict == "inconclusive (the interval contains 0: more images narrow it)"
    assert top.interval == "paired bootstrap"
    # the same numbers measured on other images: the replicates still give an interval, not paired
    other = _results(teacher, student, noise=0.001)
    other["student"]["attention_nmi"].meta["data"] = "/some/folder"
    assert _by_claim(evaluate_pair("teacher", "student", other))["MD raises NMI in the top layers"].interval == (
        "bootstrap"
    )


def test_no_interval_is_inconclusive_with_the_fix():
    results = {
        m: {"attention_nmi": per_layer("attention_nmi", m, "attention_nmi_layer_mean", {1: 0.3, 2: 0.2, 3: v})}
        for m, v in (("teacher", 0.1), ("student", 0.5))
    }
    row = _by_claim(evaluate_pair("teacher", "student", results))["MD raises NMI in the top layers"]
    assert row.delta == pytest.approx(0.4)
    assert row.verdict == "inconclusive (no interval: rerun analyze with --bootstrap 1000)"


def _curvature(model: str, eig: float, eig_bound: float, trace: float, se: float, converged: bool = True) -> dict:
    eigs = pd.DataFrame(
        [
            dict(block="all", metric="eigenvalue", index=0, value=eig, ci_low=eig - eig_bound, ci_high=eig + eig_bound),
            dict(block="all", metric="eigenvalue", index=1, value=eig / 2, ci_low=np.nan, ci_high=np.nan),
        ]
    )
    tr = pd.DataFrame([dict(block="all", metric="trace", value=trace, ci_low=trace - se, ci_high=trace + se)])
    return {
        "hessian_top_eigs": ProbeResult("hessian_top_eigs", model, eigs, {"converged": True, "images": 64}),
        "hessian_trace": ProbeResult("hessian_trace", model, tr, {"converged": converged, "images": 64}),
    }


def test_curvature_claims_combine_the_solver_bounds_and_flag_unconverged_solvers():
    results = {
        "teacher": _curvature("teacher", 10.0, 0.5, 100.0, 5.0),
        "student": _curvature("student", 6.0, 0.5, 98.0, 5.0),
    }
    rows = _by_claim(evaluate_pair("teacher", "student", results))
    eig = rows["After fine-tuning, MD gives a smaller top Hessian eigenvalue"]
    assert (eig.teacher_value, eig.student_value, eig.delta) == (10.0, 6.0, -4.0)
    assert (eig.delta_ci_low, eig.delta_ci_high, eig.interval) == (-5.0, -3.0, "bounds")
    assert eig.verdict == "holds" and eig.images == "64"
    trace = rows["After fine-tuning, MD gives a smaller Hessian trace"]
    assert (trace.delta_ci_low, trace.delta_ci_high) == (-12.0, 8.0) and trace.verdict.startswith("inconclusive")
    results["student"] = _curvature("student", 6.0, 0.5, 50.0, 5.0, converged=False)
    trace = _by_claim(evaluate_pair("teacher", "student", results))[
        "After fine-tuning, MD gives a smaller Hessian trace"
    ]
    assert trace.verdict == "inconclusive (hessian_trace did not converge for student: raise its max_iter)"


def test_slightly_is_bounded_by_the_top_layer_nmi_change():
    big = evaluate_pair(
        "teacher",
        "student",
        _results({"attention_nmi": _nmi({1: 0.9, 2: 0.5, 3: 0.1})}, {"attention_nmi": _nmi({1: 0.4, 2: 0.5, 3: 0.3})}),
    )
    lower = _by_claim(big)["MD lowers NMI slightly in the lower layers"]
    assert lower.delta == pytest.approx(-0.5)
    assert lower.verdict == "contradicted (decrease 0.5 larger than the top-layer change 0.2)"
    # the top layer missing from the student's table: the top claim is not measured, "slightly" cannot be judged
    gap = evaluate_pair(
        "teacher",
        "student",
        _results({"attention_nmi": _nmi({1: 0.3, 2: 0.2, 3: 0.1})}, {"attention_nmi": _nmi({1: 0.2, 2: 0.2})}),
    )
    rows = _by_claim(gap)
    assert rows["MD raises NMI in the top layers"].verdict == (
        "not measured (attention_nmi_layer_mean missing for some layers)"
    )
    assert rows["MD lowers NMI slightly in the lower layers"].verdict == (
        "inconclusive (cannot judge 'slightly': nmi_top not measured)"
    )


def test_groups_follow_each_models_own_depth():
    metric = "attention_distance_layer_mean"
    six = {layer: float(layer) for layer in range(1, 7)}  # depth 6: blocks 5 and 6 are the top layers
    results = {
        "teacher": {"attention_distance": per_layer("attention_distance", "teacher", metric, {1: 1.0, 2: 2.0, 3: 9.0})},
        "student": {"attention_distance": per_layer("attention_distance", "student", metric, six, depth=6)},
    }
    row = evaluate_pair("teacher", "student", results).iloc[0]
    assert (row.teacher_layers, row.student_layers) == ("3-3 of 3", "5-6 of 6")
    assert (row.teacher_value, row.student_value) == (9.0, 5.5)


def test_evaluate_stacks_pairs_and_claims_keep_unique_keys():
    results = _results(
        {"attention_nmi": _nmi({1: 0.3, 2: 0.2, 3: 0.1})}, {"attention_nmi": _nmi({1: 0.3, 2: 0.2, 3: 0.2})}
    )
    both = evaluate([("teacher", "student"), ("student", "teacher")], results)
    assert len(both) == 2 * 2 and list(both.teacher.unique()) == ["teacher", "student"]  # two NMI claims per pair
    assert evaluate([], results).empty
    assert len({c.key for c in CLAIMS}) == len(CLAIMS)
    with pytest.raises(ValueError, match="exists already"):
        register_claim(Claim("nmi_top", "again", "attention_nmi", "attention_nmi_layer_mean", "top", +1))


def _decisions(model: str, bias: float, kappa: float) -> dict:
    """A shape-bias table (overall and one category) and an error-consistency summary (the model's row
    and the humans' baseline), with replicates of the rows that have them (saved as the probes do)."""
    sb = pd.DataFrame(
        [
            dict(dataset="cue-conflict", category=c, metric="shape_bias", value=v)
            for c, v in (("all", bias), ("cat", 0.9))
        ]
    )
    ec = pd.DataFrame(
        [
            dict(observer=o, human="all", dataset="all", metric="error_consistency", value=v)
            for o, v in (("humans", 0.4), (model, kappa))
        ]
    )
    res = {
        "shape_bias": ProbeResult("shape_bias", model, sb, {**META}),
        "error_consistency": ProbeResult("error_consistency", model, ec, {**META}),
    }
    res["shape_bias"].arrays[array_key("shape_bias")] = np.array([bias, 0.9]) + 0.01 * Z
    res["error_consistency"].arrays[array_key("error_consistency")] = np.array([0.4, kappa]) + 0.01 * Z
    return res


def test_decision_claims_read_the_overall_row_and_the_models_own_summary():
    results = {"ft_teacher": _decisions("ft_teacher", 0.30, 0.10), "ft_student": _decisions("ft_student", 0.45, 0.25)}
    rows = _by_claim(evaluate_pair("ft_teacher", "ft_student", results))
    bias = rows["After fine-tuning, the MD student has a higher shape bias than the teacher"]
    assert (bias.teacher_value, bias.student_value, bias.verdict) == (0.30, 0.45, "holds")
    ec = rows["MD does not raise error consistency with humans"]
    assert (ec.teacher_value, ec.student_value) == (0.10, 0.25)  # not the humans' 0.4
    assert ec.delta == pytest.approx(0.15) and ec.verdict == "contradicted"
