"""``report.html``: one self-contained page of the paper's measurements (Secs. 3-5) with every
figure embedded as a base64 data URI, a table of per-layer numbers per model, the claims table for
teacher/student pairs, and every other saved result as a table. No external file, script, font or
stylesheet is referenced, so the page can be mailed or archived alone."""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import pandas as pd

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em auto;max-width:1200px;
color:#222;padding:0 1em}
h1{font-size:1.6em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:2em}h3{font-size:1.05em}
table{border-collapse:collapse;font-size:.82em;margin:.5em 0 1.2em}
td,th{border:1px solid #ddd;padding:2px 6px;text-align:right}th{background:#f4f4f4}
td:first-child,th:first-child{text-align:left}table.claims td{text-align:left}table.claims td.num{text-align:right}
figure{display:inline-block;margin:.6em;vertical-align:top;max-width:100%}
figure img{max-width:100%;border:1px solid #eee}figcaption{font-size:.85em;color:#444;max-width:640px}
.swatch{display:inline-block;width:.9em;height:.9em;border-radius:2px;vertical-align:middle;margin-right:.3em}
.holds{color:#1a7f37;font-weight:600}.fails{color:#b42318;font-weight:600}.na{color:#777}
.note{color:#555;font-size:.9em}.error{color:#b42318}
"""


@dataclass
class FigureBlock:
    title: str
    png: Path


@dataclass
class Section:
    title: str
    intro: str = ""
    figures: List[FigureBlock] = field(default_factory=list)
    html: List[str] = field(default_factory=list)  # extra pre-rendered fragments


def data_uri(png: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(Path(png).read_bytes()).decode("ascii")


def table_html(df: pd.DataFrame, index: bool = True, digits: int = 4) -> str:
    fmt = lambda v: f"{v:.{digits}g}" if isinstance(v, float) else str(v)  # noqa: E731
    return df.to_html(index=index, border=0, na_rep="", float_format=fmt, escape=True)


def verdict_class(verdict: str) -> str:
    return "holds" if verdict.startswith("holds") else "fails" if verdict.startswith("contradicted") else "na"


def _num(v: object) -> str:
    return "" if pd.isna(v) else f"{v:.4g}"


def _text(v: object) -> str:
    return "" if pd.isna(v) else html.escape(str(v))


def _interval(r: object) -> str:
    lo, hi, how = r.delta_ci_low, r.delta_ci_high, r.interval
    if pd.isna(lo) or pd.isna(hi):
        return ""
    return f"[{lo:.4g}, {hi:.4g}] <span class='note'>{_text(how)}</span>"


def claims_html(claims: pd.DataFrame, definitions: str) -> str:
    if claims.empty:
        return ""
    out = [
        f"<p class='note'>{html.escape(definitions)}</p>",
        "<table class='claims'><tr><th>teacher → student</th><th>claim</th><th>figure</th>"
        "<th>layers (teacher / student)</th><th>images</th><th>teacher</th><th>student</th>"
        "<th>Δ (student − teacher)</th><th>95% interval of Δ</th><th>verdict</th></tr>",
    ]
    for r in claims.itertuples():
        out.append(
            f"<tr><td>{html.escape(r.teacher)} → {html.escape(r.student)}</td><td>{html.escape(r.claim)}</td>"
            f"<td>{_text(r.figure)}</td><td>{_text(r.teacher_layers)} / {_text(r.student_layers)}</td>"
            f"<td class='num'>{_text(r.images)}</td>"
            f"<td class='num'>{_num(r.teacher_value)}</td><td class='num'>{_num(r.student_value)}</td>"
            f"<td class='num'>{_num(r.delta)}</td><td class='num'>{_interval(r)}</td>"
            f"<td class='{verdict_class(r.verdict)}'>{html.escape(r.verdict)}</td></tr>"
        )
    out.append("</table>")
    return "\n".join(out)


def render(
    title: str,
    header: List[str],
    models: List[Tuple[str, str, Dict[str, str]]],
    sections: List[Section],
    footer: Optional[str] = None,
) -> str:
    """models: (name, colour, {column: text}) rows of the model table."""
    parts = [
        "<!DOCTYPE html>",
        "<html lang='en'><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title><style>{CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
    ]
    parts += [f"<p class='note'>{line}</p>" for line in header]
    if models:
        cols = sorted({k for _, _, info in models for k in info}, key=lambda k: (k != "spec", k))
        parts.append("<table><tr><th>model</th>" + "".join(f"<th>{html.escape(c)}</th>" for c in cols) + "</tr>")
        for name, color, info in models:
            parts.append(
                f"<tr><td><span class='swatch' style='background:{color}'></span>{html.escape(name)}</td>"
                + "".join(f"<td>{html.escape(str(info.get(c, '')))}</td>" for c in cols)
                + "</tr>"
            )
        parts.append("</table>")
    for sec in sections:
        if not sec.figures and not sec.html:
            continue
        parts.append(f"<h2>{html.escape(sec.title)}</h2>")
        if sec.intro:
            parts.append(f"<p class='note'>{html.escape(sec.intro)}</p>")
        for fig in sec.figures:
            parts.append(
                f"<figure><img src='{data_uri(fig.png)}' alt='{html.escape(fig.title, quote=True)}'>"
                f"<figcaption>{html.escape(fig.title)}</figcaption></figure>"
            )
        parts += sec.html
    if footer:
        parts.append(f"<p class='note'>{footer}</p>")
    parts.append("</body></html>")
    return "\n".join(parts)


__all__ = ["FigureBlock", "Section", "data_uri", "table_html", "claims_html", "render", "verdict_class"]
