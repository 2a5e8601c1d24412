"""Figures of the representation probes, with the paper's axes (Secs. 3-4): Fig. 3b Δ log amplitude
of the highest kept frequency per layer; Figs. 4/5 token-/image-level Δ log singular value per index,
one panel per model, a colour ramp for depth (lighter = deeper); Figs. 6b/6c the per-layer mean of
those spectra, models overlaid. Reads only saved results."""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List

import numpy as np
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize

from maskdistill.probes.core.registry import ProbeResult
from maskdistill.report.registry import figure, section
from maskdistill.report.style import DEPTH_CMAP, depth_colors, plt, save

section(
    "representations",
    "Representations (Secs. 3-4)",
    order=20,
    intro="Residual stream before the final norm, prefix tokens dropped; layer 0 is the patch "
    "embedding, layer i the output of block i.",
)


def _scalar_plot(
    results: Dict[str, ProbeResult],
    colors: Dict[str, str],
    metric: str,
    ylabel: str,
    title: str,
    figdir: Path,
    name: str,
) -> List[Path]:
    fig, ax = plt.subplots(figsize=(5.0, 3.6))
    drawn = False
    for model, res in results.items():
        t = res.table
        s = t[t.metric == metric].sort_values("layer")
        if s.empty:
            continue
        drawn = True
        ax.plot(s["layer"], s["value"], "o-", color=colors[model], label=model, ms=4)
    if not drawn:
        plt.close(fig)
        return []
    ax.set_xlabel("layer (0 = patch embedding)")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save(fig, figdir, name)


def _curves_plot(
    results: Dict[str, ProbeResult],
    colors: Dict[str, str],
    array: str,
    xlabel: str,
    ylabel: str,
    title: str,
    figdir: Path,
    name: str,
    x_of=None,
) -> List[Path]:
    models = [m for m, r in results.items() if array in r.arrays]
    if not models:
        return []
    fig, axes = plt.subplots(1, len(models), figsize=(3.6 * len(models) + 0.8, 3.4), squeeze=False, sharey=True)
    for ax, model in zip(axes[0], models):
        curves = results[model].arrays[array]  # (layers, K)
        cols = depth_colors(curves.shape[0])
        x = x_of(curves.shape[1]) if x_of else np.arange(curves.shape[1])
        for l in range(curves.shape[0]):
            ax.plot(x, curves[l], color=cols[l], lw=1.2)
        ax.set_title(model, fontsize=9, color=colors[model])
        ax.set_xlabel(xlabel)
        ax.grid(alpha=0.3)
        depth = curves.shape[0] - 1
        fig.colorbar(ScalarMappable(Normalize(0, max(depth, 1)), DEPTH_CMAP), ax=ax, label="layer", fraction=0.05)
    axes[0, 0].set_ylabel(ylabel)
    fig.suptitle(title, fontsize=10)
    return save(fig, figdir, name)


@figure(
    "feature_fourier",
    section="representations",
    order=10,
    title="Fig. 3b: relative log amplitude of the highest kept frequency per layer",
)
def plot_fourier(results: Dict[str, ProbeResult], colors: Dict[str, str], figdir: Path) -> List[Path]:
    return _scalar_plot(
        results,
        colors,
        "high_freq_relative_log_amplitude",
        "Δ log amplitude",
        "Relative log amplitude (high frequency)",
        figdir,
        "fig3b_feature_fourier",
    )


@figure(
    "feature_fourier",
    name="feature_fourier_curves",
    section="representations",
    order=11,
    title="Relative log amplitude over diagonal frequencies (0 … π), colour = layer",
)
def plot_fourier_curves(results: Dict[str, ProbeResult], colors: Dict[str, str], figdir: Path) -> List[Path]:
    return _curves_plot(
        results,
        colors,
        "relative_log_amplitude",
        "frequency (×π)",
        "Δ log amplitude",
        "Fourier spectrum of the features",
        figdir,
        "fig3b_feature_fourier_curves",
        x_of=lambda k: np.linspace(0, 1, k) if k > 1 else np.zeros(1),
    )


def _of(results: Dict[str, ProbeResult]) -> str:
    ofs = sorted({str(r.meta.get("of", "covariance")) for r in results.values()})
    return "/".join(ofs)


@figure(
    "token_singular_values",
    section="representations",
    order=20,
    title="Fig. 4: token-level relative log singular values per index, colour = layer",
)
def plot_token_spectra(results: Dict[str, ProbeResult], colors: Dict[str, str], figdir: Path) -> List[Path]:
    return _curves_plot(
        results,
        colors,
        "relative_log_singular_value",
        "singular value index",
        "Δ log singular value",
        f"Token-level spectrum (of {_of(results)})",
        figdir,
        "fig4_token_singular_values",
    )


@figure(
    "token_singular_values",
    name="token_singular_values_mean",
    section="representations",
    order=21,
    title="Fig. 6b: mean token-level relative log singular value per layer",
)
def plot_token_mean(results: Dict[str, ProbeResult], colors: Dict[str, str], figdir: Path) -> List[Path]:
    return _scalar_plot(
        results,
        colors,
        "mean_relative_log_singular_value",
        "mean Δ log singular value",
        f"Token-level spectrum, mean (of {_of(results)})",
        figdir,
        "fig6b_token_singular_values_mean",
    )


@figure(
    "image_singular_values",
    section="representations",
    order=30,
    title="Fig. 5: image-level relative log singular values per index, colour = layer",
)
def plot_image_spectra(results: Dict[str, ProbeResult], colors: Dict[str, str], figdir: Path) -> List[Path]:
    return _curves_plot(
        results,
        colors,
        "relative_log_singular_value",
        "singular value index",
        "Δ log singular value",
        f"Image-level spectrum (of {_of(results)})",
        figdir,
        "fig5_image_singular_values",
    )


@figure(
    "image_singular_values",
    name="image_singular_values_mean",
    section="representations",
    order=31,
    title="Fig. 6c: mean image-level relative log singular value per layer",
)
def plot_image_mean(results: Dict[str, ProbeResult], colors: Dict[str, str], figdir: Path) -> List[Path]:
    return _scalar_plot(
        results,
        colors,
        "mean_relative_log_singular_value",
        "mean Δ log singular value",
        f"Image-level spectrum, mean (of {_of(results)})",
        figdir,
        "fig6c_image_singular_values_mean",
    )


__all__ = [
    "plot_fourier",
    "plot_fourier_curves",
    "plot_token_spectra",
    "plot_token_mean",
    "plot_image_spectra",
    "plot_image_mean",
]
