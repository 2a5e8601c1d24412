"""The claims table on hand-made per-layer tables: the layer groups (first and last third of the
blocks), the verdicts "holds" / "does not hold" / "not measured" / "not comparable", and the
"slightly" bound of the lower-layer NMI claim."""

from __future__ import annotations

import math

import pytest

from maskdistill.report.claims import CLAIMS, Claim, evaluate, evaluate_pair, layer_groups, register_claim
from report.saved_results import per_layer


def _results(teacher: dict, student: dict) -> dict:
    """{model: {probe: result}} from {probe: (metric, {layer: value}, meta)} per model."""
    out = {}
    for model, probes in (("teacher", teacher), ("student", student)):
        out[model] = {p: per_layer(p, model, metric, values, **meta) for p, (metric, values, meta) in probes.items()}
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


def test_verdicts_with_their_numbers():
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
    table = evaluate_pair("teacher", "student", results)
    assert len(table) == len(CLAIMS) and set(table.teacher) == {"teacher"} and set(table.student) == {"student"}
    rows = _by_claim(table)
    distance = rows["MD lowers the average attention distance in the top layers"]
    assert (distance.teacher_value, distance.student_value, distance.delta) == (80.0, 50.0, -30.0)
    assert (distance.teacher_layers, distance.student_layers, distance.verdict) == ("3-3 of 3", "3-3 of 3", "holds")
    top = rows["MD raises NMI in the top layers"]
    assert top.delta == pytest.approx(0.2) and top.verdict == "holds"
    lower = rows["MD lowers NMI slightly in the lower layers"]
    assert lower.delta == pytest.approx(-0.02) and lower.teacher_layers == "1-1 of 3" and lower.verdict == "holds"
    token = rows["MD raises the top-layer token-level relative singular values (less folding)"]
    assert token.delta == pytest.approx(-1.0) and token.verdict == "does not hold"
    image = rows["MD raises the top-layer image-level relative singular values (less folding)"]
    assert image.verdict == "not comparable (of=covariance vs of=gram)" and math.isnan(image.delta)
    fourier = [r for c, r in rows.items() if c.startswith("MD increases the low-frequency preference")][0]
    assert fourier.verdict == "not measured (run feature_fourier on both models)"


def test_slightly_is_bounded_by_the_top_layer_nmi_change():
    big = evaluate_pair(
        "teacher",
        "student",
        _results({"attention_nmi": _nmi({1: 0.9, 2: 0.5, 3: 0.1})}, {"attention_nmi": _nmi({1: 0.4, 2: 0.5, 3: 0.3})}),
    )
    lower = _by_claim(big)["MD lowers NMI slightly in the lower layers"]
    assert lower.delta == pytest.approx(-0.5)
    assert lower.verdict == "does not hold (decrease 0.5 larger than the top-layer change 0.2)"
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
        "does not hold (cannot judge 'slightly': nmi_top not measured)"
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
    assert (row.teacher_value, row.student_value, row.verdict) == (9.0, 5.5, "holds")


def test_evaluate_stacks_pairs_and_claims_keep_unique_keys():
    results = _results(
        {"attention_nmi": _nmi({1: 0.3, 2: 0.2, 3: 0.1})}, {"attention_nmi": _nmi({1: 0.3, 2: 0.2, 3: 0.2})}
    )
    both = evaluate([("teacher", "student"), ("student", "teacher")], results)
    assert len(both) == 2 * len(CLAIMS) and list(both.teacher.unique()) == ["teacher", "student"]
    assert evaluate([], results).empty
    with pytest.raises(ValueError, match="exists already"):
        register_claim(Claim("nmi_top", "again", "attention_nmi", "attention_nmi_layer_mean", "top", +1))
