"""Figures (one function per paper figure) and the self-contained HTML report; reads only saved
probe results (DESIGN.md), so everything regenerates without a model or a GPU.

Families register figures with :func:`figure` (and sections with :func:`section`) in a module
``maskdistill/report/<family>_plots.py``; :func:`build_report` finds them by that name."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Optional, Sequence, Tuple

from maskdistill.report.registry import FigureSpec, SectionSpec, figure, layer_table, section


def build_report(
    out: str | Path,
    pairs: Optional[Sequence[Tuple[str, str]]] = None,
    sharpness: Optional[Mapping[str, str | Path]] = None,
) -> Path:
    """``maskdistill report DIR``: figures + ``DIR/report.html`` (see ``report/build.py``);
    ``sharpness``: ``{name: fine-tuning run}`` added to Fig. 7c/f (``report/sharpness.py``)."""
    from maskdistill.report.build import build_report as _build  # matplotlib is imported only when a report is built

    return _build(out, pairs, sharpness)


__all__ = ["build_report", "figure", "section", "layer_table", "FigureSpec", "SectionSpec"]
