"""Per-layer figures with the models side by side, each model in its fixed colour: the shared
drawing of the report's per-layer figures (paper Fig. 3a attention distance, Fig. 3b high-frequency
amplitude, Fig. 6a NMI, Figs. 6b/6c mean singular values, Fig. 10 entropy). A probe's table holds a
per-layer curve as the rows of one metric with a ``layer`` column. Reads only saved results.

A figure is a small frozen object called as ``fig(results, colors, figdir) -> [png, pdf]``, so a
plot module registers it with :func:`maskdistill.report.registry.figure` as a plain value."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Union

from matplotlib.axes import Axes
from matplotlib.ticker import MaxNLocator

from maskdistill.probes.core.registry import ProbeResult
from maskdistill.report.style import plt, save_figure

# draws more of one model before its line, so that the line stays on top: (ax, result, colour)
Extra = Callable[[Axes, ProbeResult, str], None]
# a fixed title, or one made from the results (e.g. naming the matrix their spectra were taken of)
Title = Union[str, Callable[[Dict[str, ProbeResult]], str]]


def draw_layer_lines(
    ax: Axes,
    results: Dict[str, ProbeResult],
    colors: Dict[str, str],
    metric: str,
    extra: Optional[Extra] = None,
) -> int:
    """One ``o-`` line per model: ``metric`` against ``layer``, in the model's colour, labelled with
    the model's name, over a band of its 95 % interval where the result has one (``ci_low`` /
    ``ci_high``); a model without rows of ``metric`` is left out. Returns the lines drawn."""
    drawn = 0
    for model, res in results.items():
        t = res.table
        rows = t[t.metric == metric].sort_values("layer")
        if rows.empty:
            continue
        if extra is not None:
            extra(ax, res, colors[model])
        if {"ci_low", "ci_high"} <= set(rows.columns) and rows[["ci_low", "ci_high"]].notna().all().all():
            ax.fill_between(rows["layer"], rows["ci_low"], rows["ci_high"], color=colors[model], alpha=0.2, lw=0)
        ax.plot(rows["layer"], rows["value"], "o-", color=colors[model], label=model, ms=4)
        drawn += 1
    return drawn


@dataclass(frozen=True)
class LayerFigure:
    """What every per-layer figure names: its file (``figdir/<file>.png`` and ``.pdf``), axis labels
    and title."""

    file: str
    xlabel: str
    ylabel: str
    title: Title

    def title_for(self, results: Dict[str, ProbeResult]) -> str:
        return self.title(results) if callable(self.title) else self.title


@dataclass(frozen=True)
class LayerLines(LayerFigure):
    """``metric`` per layer, one line per model (:func:`draw_layer_lines`); ``extra`` draws more of
    each model under its line. No file when no model has the metric."""

    metric: str
    extra: Optional[Extra] = None

    def __call__(self, results: Dict[str, ProbeResult], colors: Dict[str, str], figdir: Path) -> List[Path]:
        fig, ax = plt.subplots(figsize=(5.0, 3.6))
        if not draw_layer_lines(ax, results, colors, self.metric, self.extra):
            plt.close(fig)
            return []
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # layers are whole blocks
        ax.set_xlabel(self.xlabel)
        ax.set_ylabel(self.ylabel)
        ax.set_title(self.title_for(results), fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        return save_figure(fig, Path(figdir) / self.file)


__all__ = ["Extra", "Title", "LayerFigure", "LayerLines", "draw_layer_lines"]
