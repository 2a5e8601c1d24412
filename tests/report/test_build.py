"""``build_report`` on a small folder of hand-written results: the figures of every probe present
(PNG + PDF), report.html naming each model in its colour and embedding exactly those figures, the
claims of the manifest's pair (also as claims.csv), the per-layer numbers, the results without a
figure, the skipped probes; a failing figure is listed and the rest of the report is kept."""

from __future__ import annotations

import base64
import html
import json
import re

import pandas as pd
import pytest

from maskdistill.report import build_report
from maskdistill.report.registry import figures
from report.saved_results import write_analysis

DRAWN = {  # figure file -> the probe it draws
    "fig3a_attention_distance": "attention_distance",
    "fig6a_attention_nmi": "attention_nmi",
    "fig10_attention_entropy": "attention_entropy",
    "fig4_token_singular_values": "token_singular_values",
    "fig6b_token_singular_values_mean": "token_singular_values",
    "fig3b_feature_fourier": "feature_fourier",
    "fig3b_feature_fourier_curves": "feature_fourier",
}


def _images(page: str) -> list:
    return [base64.b64decode(b) for b in re.findall(r"<img src='data:image/png;base64,([A-Za-z0-9+/=]+)'", page)]


def test_report_names_each_model_and_embeds_its_figures(tmp_path):
    out = write_analysis(tmp_path / "analysis")
    path = build_report(out)
    assert path == out / "report.html"
    page = path.read_text(encoding="utf-8")
    figdir = out / "figures"
    assert sorted(p.name for p in figdir.iterdir()) == sorted(f"{f}.{e}" for f in DRAWN for e in ("png", "pdf"))
    assert all((figdir / f"{f}.pdf").read_bytes()[:5] == b"%PDF-" for f in DRAWN)
    # every figure embedded once, byte for byte the saved PNG, under its registered caption
    assert sorted(_images(page)) == sorted((figdir / f"{f}.png").read_bytes() for f in DRAWN)
    captions = [f.title for f in figures() if f.probe in set(DRAWN.values())]
    assert len(captions) == len(DRAWN) and all(f"<figcaption>{html.escape(c)}</figcaption>" in page for c in captions)
    # the model table: manifest order, the palette's first two colours, the spec from the manifest
    assert "background:#1f77b4'></span>teacher</td>" in page and "background:#d62728'></span>student</td>" in page
    assert page.index("</span>teacher</td>") < page.index("</span>student</td>")
    assert "<td>timm:tiny_student</td>" in page
    assert (
        "attention_distance, attention_entropy, attention_nmi, feature_fourier, knn_accuracy, token_singular_values"
        in page
    )
    # claims, also as a table on disk
    claims = pd.read_csv(out / "claims.csv")
    assert list(claims.verdict[:4]) == ["holds", "contradicted", "holds", "holds"]  # distance top/lower, NMI top/lower
    assert claims.verdict[4] == "not measured (attention_entropy_head_std missing for some layers)"
    assert claims.verdict[5] == "holds" and claims.probe[5] == "token_singular_values"
    assert claims.verdict[6] == "holds" and claims.delta[6] == pytest.approx(-0.5)  # low frequencies, top layers
    assert claims.verdict[7] == "inconclusive (the interval contains 0: more images narrow it)"  # delta 0
    assert "image_singular_values" not in set(claims.probe)  # neither model ran it
    assert page.count("<td class='holds'>holds</td>") == 5 and page.count("<td class='fails'>contradicted</td>") == 1
    # the sections after the figures
    assert "<h2>Per-layer numbers</h2>" in page and "token_singular_values: mean_relative_log_singular_value" in page
    assert "<h3>student: knn_accuracy</h3>" in page and "<td>0.625</td>" in page
    assert "student: hessian_trace skipped: needs labels" in page


def test_a_failing_figure_is_listed_and_the_rest_is_kept(tmp_path):
    out = write_analysis(tmp_path / "analysis", broken_entropy=True)
    page = build_report(out).read_text(encoding="utf-8")
    assert "<p class='error'>figure attention_entropy: KeyError: &#x27;head&#x27;</p>" in page
    assert not (out / "figures" / "fig10_attention_entropy.png").exists()
    assert len(_images(page)) == len(DRAWN) - 1
    assert "<h3>teacher: attention_entropy</h3>" in page  # without a figure: shown as a table


def test_model_order_pairs_and_errors(tmp_path):
    manifest = {"models": {}, "order": ["student"], "pairs": []}
    out = write_analysis(tmp_path / "analysis", manifest=manifest)
    page = build_report(out, pairs=[("teacher", "ghost")]).read_text(encoding="utf-8")
    assert "background:#1f77b4'></span>student</td>" in page and "background:#d62728'></span>teacher</td>" in page
    assert "<p class='error'>pair member(s) without results: ghost</p>" in page
    assert not (out / "claims.csv").exists()  # no complete pair: nothing to evaluate
    with pytest.raises(FileNotFoundError, match="is not a folder of analysis results"):
        build_report(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "analyze.json").write_text(json.dumps(manifest))
    with pytest.raises(FileNotFoundError, match="no probe results"):
        build_report(tmp_path / "empty")
