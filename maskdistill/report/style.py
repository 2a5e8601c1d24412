"""Shared look of the report's figures (paper Figs. 2-6, 10): one fixed colour per model across
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


def model_colors(models: Sequence[str]) -> Dict[str, str]:
    """A fixed colour per model, by report order (cycled beyond ten models)."""
    return {m: PALETTE[i % len(PALETTE)] for i, m in enumerate(models)}


def depth_colors(n: int) -> np.ndarray:
    """(n, 4) RGBA from dark to light for layers 0..n-1."""
    return plt.get_cmap(DEPTH_CMAP)(np.linspace(0.0, 1.0, max(n, 1)))


def safe_name(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text)


def save(fig: "plt.Figure", figdir: Path, name: str) -> List[Path]:
    """Write ``figdir/name.png`` and ``.pdf``; returns both paths, PNG first."""
    figdir.mkdir(parents=True, exist_ok=True)
    paths = [figdir / f"{safe_name(name)}.png", figdir / f"{safe_name(name)}.pdf"]
    fig.tight_layout()
    for p in paths:
        fig.savefig(p, dpi=130)
    plt.close(fig)
    return paths


__all__ = ["PALETTE", "DEPTH_CMAP", "model_colors", "depth_colors", "safe_name", "save", "plt"]
