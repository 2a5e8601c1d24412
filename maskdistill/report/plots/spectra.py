"""Figures of the representation probes, with the paper's axes (Secs. 3-4): Fig. 3b Δ log amplitude
of the highest kept frequency per layer; Figs. 4/5 token-/image-level Δ log singular value per index,
one panel per model, a colour ramp for depth (lighter = deeper); Figs. 6b/6c the per-layer mean of
those spectra, models overlaid. Reads only saved results."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize

from maskdistill.probes.core.registry import ProbeResult
from maskdistill.report.plots.lines import LayerFigure, LayerLines
from maskdistill.report.registry import figure, section
from maskdistill.report.style import DEPTH_CMAP, depth_colors, plt, save_figure

section(
    "representations",
    "Representations (Secs. 3-4)",
    order=20,
    intro="Residual stream before the final norm, prefix tokens dropped; layer 0 is the patch "
    "embedding, layer i the output of block i.",
)


LAYER_AXIS = "layer (0 = patch embedding)"


@dataclass(frozen=True)
class DepthCurves(LayerFigure):
    """One panel per model (titled in the model's colour): a curve per layer of the (layers, K)
    ``array``, coloured by depth; ``x_of(K)`` gives the x values (default 0 .. K-1)."""

    array: str
    x_of: Optional[Callable[[int], np.ndarray]] = None

    def __call__(self, results: Dict[str, ProbeResult], colors: Dict[str, str], figdir: Path) -> List[Path]:
        models = [m for m, r in results.items() if self.array in r.arrays]
        if not models:
            return []
        fig, axes = plt.subplots(1, len(models), figsize=(3.6 * len(models) + 0.8, 3.4), squeeze=False, sharey=True)
        for ax, model in zip(axes[0], models):
            curves = results[model].arrays[self.array]  # (layers, K)
            cols = depth_colors(curves.shape[0])
            x = self.x_of(curves.shape[1]) if self.x_of else np.arange(curves.shape[1])
            for l in range(curves.shape[0]):
                ax.plot(x, curves[l], color=cols[l], lw=1.2)
            ax.set_title(model, fontsize=9, color=colors[model])
            ax.set_xlabel(self.xlabel)
            ax.grid(alpha=0.3)
            depth = curves.shape[0] - 1
            fig.colorbar(ScalarMappable(Normalize(0, max(depth, 1)), DEPTH_CMAP), ax=ax, label="layer", fraction=0.05)
        axes[0, 0].set_ylabel(self.ylabel)
        fig.suptitle(self.title_for(results), fontsize=10)
        return save_figure(fig, Path(figdir) / self.file)


def _frequencies(k: int) -> np.ndarray:
    """The kept diagonal frequencies as fractions of π: 0 .. 1."""
    return np.linspace(0, 1, k) if k > 1 else np.zeros(1)


plot_fourier = figure(
    "feature_fourier",
    section="representations",
    order=10,
    title="Fig. 3b: relative log amplitude of the highest kept frequency per layer",
)(
    LayerLines(
        file="fig3b_feature_fourier",
        xlabel=LAYER_AXIS,
        ylabel="Δ log amplitude",
        title="Relative log amplitude (high frequency)",
        metric="high_freq_relative_log_amplitude",
    )
)
plot_fourier_curves = figure(
    "feature_fourier",
    name="feature_fourier_curves",
    section="representations",
    order=11,
    title="Relative log amplitude over diagonal frequencies (0 … π), colour = layer",
)(
    DepthCurves(
        file="fig3b_feature_fourier_curves",
        xlabel="frequency (×π)",
        ylabel="Δ log amplitude",
        title="Fourier spectrum of the features",
        array="relative_log_amplitude",
        x_of=_frequencies,
    )
)


def _of(results: Dict[str, ProbeResult]) -> str:
    """The matrix the spectra were taken of (``covariance`` unless the probe says otherwise)."""
    ofs = sorted({str(r.meta.get("of", "covariance")) for r in results.values()})
    return "/".join(ofs)


def _spectrum_figures(level: str, order: int, spectrum_fig: str, mean_fig: str) -> Tuple[DepthCurves, LayerLines]:
    """Register the two figures of the ``<level>_singular_values`` probe (token: Figs. 4 and 6b;
    image: Figs. 5 and 6c): the spectrum per index, colour = layer, and its per-layer mean."""
    probe, name = f"{level}_singular_values", level.capitalize()
    spectrum = DepthCurves(
        file=f"fig{spectrum_fig}_{probe}",
        xlabel="singular value index",
        ylabel="Δ log singular value",
        title=lambda results: f"{name}-level spectrum (of {_of(results)})",
        array="relative_log_singular_value",
    )
    mean = LayerLines(
        file=f"fig{mean_fig}_{probe}_mean",
        xlabel=LAYER_AXIS,
        ylabel="mean Δ log singular value",
        title=lambda results: f"{name}-level spectrum, mean (of {_of(results)})",
        metric="mean_relative_log_singular_value",
    )
    caption = f"Fig. {spectrum_fig}: {level}-level relative log singular values per index, colour = layer"
    figure(probe, section="representations", order=order, title=caption)(spectrum)
    caption = f"Fig. {mean_fig}: mean {level}-level relative log singular value per layer"
    figure(probe, name=f"{probe}_mean", section="representations", order=order + 1, title=caption)(mean)
    return spectrum, mean


plot_token_spectra, plot_token_mean = _spectrum_figures("token", 20, "4", "6b")
plot_image_spectra, plot_image_mean = _spectrum_figures("image", 30, "5", "6c")

__all__ = [
    "DepthCurves",
    "plot_fourier",
    "plot_fourier_curves",
    "plot_token_spectra",
    "plot_token_mean",
    "plot_image_spectra",
    "plot_image_mean",
]
