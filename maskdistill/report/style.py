"""Shared look of the report's figures (paper Figs. 2-7, 10-12): one fixed colour per model across
all figures, a depth colour ramp (darker = lower layer, lighter = deeper, as the paper's Figs. 4/5),
and saving every figure as PNG + PDF. Matplotlib runs headless (Agg)."""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#7f7f7f", "#bcbd22")
DEPTH_CMAP = "viridis"  # dark (low layers) -> light (deep layers)
DPI = 130


def model_colors(models: Sequence[str]) -> Dict[str, str]:
    """A fixed colour per model, by report order (cycled beyond ten models)."""
    return {m: PALETTE[i % len(PALETTE)] for i, m in enumerate(models)}


def depth_colors(n: int) -> np.ndarray:
    """(n, 4) RGBA from dark to light for layers 0..n-1."""
    return plt.get_cmap(DEPTH_CMAP)(np.linspace(0.0, 1.0, max(n, 1)))


def safe_name(text: str) -> str:
    """``text`` as a file name: anything but letters, digits and ``-_.`` becomes ``_``."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text)


def save_figure(fig: "plt.Figure", out_prefix: str | Path, dpi: int = DPI) -> List[Path]:
    """Write ``<out_prefix>.png`` and ``<out_prefix>.pdf`` (creating the folder) and close ``fig``;
    returns both paths, PNG first. The suffixes are appended, so a dot in the prefix is kept."""
    out = Path(out_prefix)
    out.parent.mkdir(parents=True, exist_ok=True)
    paths = [out.with_name(out.name + ".png"), out.with_name(out.name + ".pdf")]
    fig.tight_layout()
    for p in paths:
        fig.savefig(p, dpi=dpi)
    plt.close(fig)  # figures are drawn in a loop over probes: keep matplotlib's memory flat
    return paths


__all__ = ["PALETTE", "DEPTH_CMAP", "DPI", "model_colors", "depth_colors", "safe_name", "save_figure", "plt"]
