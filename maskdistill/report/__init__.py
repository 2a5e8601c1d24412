"""Figures (one per paper figure) and the self-contained HTML report (paper Secs. 3-5). report/
reads only saved results, so figures regenerate without a model or a GPU.

Figure families register figures with :func:`figure` (and sections with :func:`section`) in a
module of ``maskdistill/report/plots/`` named in ``registry.PLOT_MODULES``; :func:`build_report`
imports them when it draws."""

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
    ``pairs``: teacher/student pairs whose claims are stated; ``sharpness``: ``{name: fine-tuning
    run}`` added to Fig. 7c/f (``report/plots/sharpness.py``)."""
    from maskdistill.report.build import build_report as _build  # matplotlib is imported only when a report is built

    return _build(out, pairs, sharpness)


__all__ = ["build_report", "figure", "section", "layer_table", "FigureSpec", "SectionSpec"]
