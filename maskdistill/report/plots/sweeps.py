"""Figures of the fine-tuning sweeps (paper Fig. 8b: top-1 against the peak learning rate; Fig. 8c:
top-1 against the number of frozen blocks, the linear probe as the last point). Reads only the
sweep's table, so figures regenerate without a model."""

from __future__ import annotations

from pathlib import Path
from typing import List

import pandas as pd

from maskdistill.report.style import plt, save_figure

LINEAR_PROBE = "linear"


def plot_sweep(table: pd.DataFrame, kind: str, out_prefix: str | Path) -> List[Path]:
    """``table``: columns model, value, top1 (a sweep_<kind>.csv); writes ``out_prefix`` PNG and PDF."""
    fig, ax = plt.subplots(figsize=(4.2, 3.2))
    for i, (model, rows) in enumerate(table.groupby("model", sort=False)):
        color = f"C{i}"
        if kind == "lr":
            rows = rows.assign(x=rows["value"].astype(float)).sort_values("x")
            ax.plot(rows["x"], 100 * rows["top1"], "o-", color=color, label=model)
        else:
            probe = rows[rows["value"].astype(str) == LINEAR_PROBE]
            blocks = rows[rows["value"].astype(str) != LINEAR_PROBE]
            blocks = blocks.assign(x=blocks["value"].astype(float)).sort_values("x")
            ax.plot(blocks["x"], 100 * blocks["top1"], "o-", color=color, label=model)
            if len(probe):
                x = (blocks["x"].max() + 1) if len(blocks) else 0
                ax.plot([x], 100 * probe["top1"].to_numpy()[:1], "s", color=color, markerfacecolor="white")
    if kind == "lr":
        ax.set_xscale("log")
        ax.set_xlabel("peak learning rate")
    else:
        ax.set_xlabel("frozen blocks (square: linear probe)")
    ax.set_ylabel("top-1 (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save_figure(fig, out_prefix, dpi=150)
