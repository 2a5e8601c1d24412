"""The per-layer line figure shared by the attention and representation figures: one line per model,
in the model's colour, through its per-layer values in layer order."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.colors import to_hex

from maskdistill.probes.core.registry import ProbeResult
from maskdistill.report.plots.lines import LayerLines, draw_layer_lines
from maskdistill.report.style import plt
from report.saved_results import attention, per_layer

COLORS = {"teacher": "#1f77b4", "student": "#d62728", "other": "#2ca02c"}


def test_one_line_per_model_in_its_colour_through_its_values():
    results = {
        "teacher": per_layer("p", "teacher", "m", {3: 0.3, 1: 0.1, 2: 0.2}),  # rows out of layer order
        "student": per_layer("p", "student", "m", {1: 1.0, 2: 2.0, 3: 4.0}),
        "other": per_layer("p", "other", "not_m", {1: 9.0}),  # no rows of the metric: no line
    }
    fig, ax = plt.subplots()
    assert draw_layer_lines(ax, results, COLORS, "m") == 2
    lines = ax.get_lines()
    assert [ln.get_label() for ln in lines] == ["teacher", "student"]
    assert [to_hex(ln.get_color()) for ln in lines] == ["#1f77b4", "#d62728"]
    assert list(lines[0].get_xdata()) == [1, 2, 3] and list(lines[0].get_ydata()) == [0.1, 0.2, 0.3]
    assert list(lines[1].get_ydata()) == [1.0, 2.0, 4.0]
    assert [(ln.get_linestyle(), ln.get_marker()) for ln in lines] == [("-", "o"), ("-", "o")]
    plt.close(fig)


def test_extra_draws_each_model_before_its_line():
    calls = []
    results = {m: attention("attention_nmi", m, {1: 0.5, 2: 0.6}) for m in ("teacher", "student")}

    def extra(ax, res, color):
        calls.append((res.model, color, len(ax.get_lines())))  # lines drawn so far: the extra comes first
        ax.scatter([1], [0.5], color=color)

    fig, ax = plt.subplots()
    assert draw_layer_lines(ax, results, COLORS, "attention_nmi_layer_mean", extra) == 2
    assert calls == [("teacher", "#1f77b4", 0), ("student", "#d62728", 1)]
    assert len(ax.collections) == 2
    plt.close(fig)


def test_layer_lines_figure_saves_png_and_pdf_or_nothing(tmp_path):
    fig = LayerLines(file="fig_x", xlabel="layer", ylabel="y", title=lambda r: f"{len(r)} models", metric="m")
    results = {"teacher": per_layer("p", "teacher", "m", {1: 1.0, 2: 2.0})}
    paths = fig(results, COLORS, tmp_path / "figures")
    assert paths == [tmp_path / "figures" / "fig_x.png", tmp_path / "figures" / "fig_x.pdf"]
    assert all(p.stat().st_size > 1000 for p in paths)
    assert fig.title_for(results) == "1 models" and LayerLines("f", "x", "y", "fixed", "m").title_for({}) == "fixed"
    empty = {"teacher": ProbeResult("p", "teacher", pd.DataFrame({"layer": [1], "metric": ["n"], "value": [np.nan]}))}
    assert fig(empty, COLORS, tmp_path / "none") == [] and not (tmp_path / "none").exists()


def test_intervals_are_drawn_as_a_band_under_each_line():
    banded = per_layer("p", "teacher", "m", {1: 1.0, 2: 2.0, 3: 3.0})
    banded.table["ci_low"] = banded.table["value"] - 0.5
    banded.table["ci_high"] = banded.table["value"] + 0.25
    results = {"teacher": banded, "student": per_layer("p", "student", "m", {1: 1.0, 2: 2.0, 3: 3.0})}
    fig, ax = plt.subplots()
    assert draw_layer_lines(ax, results, COLORS, "m") == 2
    (band,) = ax.collections  # the student has no interval: no band
    assert to_hex(band.get_facecolor()[0][:3]) == "#1f77b4"
    ys = band.get_paths()[0].vertices[:, 1]
    assert ys.min() == 0.5 and ys.max() == 3.25  # from the lowest ci_low to the highest ci_high
    plt.close(fig)
