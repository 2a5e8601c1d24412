"""The claims table as Markdown, for a terminal, a README or a model card: one row per claim with
both values, the delta and its 95 % interval, the images and the verdict (the columns of
``claims.csv``, which :mod:`maskdistill.report.verdicts` writes)."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd


def _num(v: object) -> str:
    return "" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{float(v):.3g}"


def _interval(r: pd.Series) -> str:
    lo, hi = r.get("delta_ci_low"), r.get("delta_ci_high")
    if lo is None or hi is None or pd.isna(lo) or pd.isna(hi):
        return ""
    return f"[{_num(lo)}, {_num(hi)}]"


def claims_markdown(claims: pd.DataFrame) -> str:
    """A Markdown table of a claims table (empty string when it has no rows)."""
    if claims.empty:
        return ""
    lines = [
        "| pair | claim | teacher | student | Δ | 95% interval | images | verdict |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for _, r in claims.iterrows():
        images = "" if pd.isna(r.get("images")) else str(r.get("images"))
        lines.append(
            f"| {r['teacher']} → {r['student']} | {r['claim']} | {_num(r.get('teacher_value'))} | "
            f"{_num(r.get('student_value'))} | {_num(r.get('delta'))} | {_interval(r)} | {images} | {r['verdict']} |"
        )
    return "\n".join(lines)


def read_claims_markdown(analysis: str | Path) -> str:
    """The Markdown claims table of an analysis folder's ``claims.csv`` (what its report shows)."""
    path = Path(analysis) / "claims.csv"
    if not path.is_file():
        raise FileNotFoundError(
            f"{analysis} holds no claims.csv; run `maskdistill analyze` with a teacher/student --pair "
            f"(or `maskdistill report {analysis}`) to write it."
        )
    return claims_markdown(pd.read_csv(path))


__all__ = ["claims_markdown", "read_claims_markdown"]
