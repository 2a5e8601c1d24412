"""Figures of the attention probes, with the paper's axes (Sec. 3): Fig. 2 attention maps of query
patches overlaid on the images; Fig. 3a average attention distance (pixels) per layer; Fig. 6a NMI
per layer; Fig. 10 attention entropy per head per layer. Models are overlaid in their fixed colour:
small dots are heads, the line is the mean over heads. Reads only saved results."""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List

import numpy as np

from maskdistill.probes.core.registry import ProbeResult
from maskdistill.report.registry import figure, section
from maskdistill.report.style import plt, save

section(
    "attention",
    "Attention (Sec. 3)",
    order=10,
    intro="Post-softmax attention with prefix tokens dropped and rows renormalised; layer i is the "
    "attention inside block i. Dots: heads; lines: mean over heads.",
)


def _per_layer_plot(
    results: Dict[str, ProbeResult],
    colors: Dict[str, str],
    metric: str,
    ylabel: str,
    title: str,
    figdir: Path,
    name: str,
    heads: bool = True,
) -> List[Path]:
    fig, ax = plt.subplots(figsize=(5.0, 3.6))
    drawn = False
    for model, res in results.items():
        t = res.table
        mean = t[t.metric == f"{metric}_layer_mean"].sort_values("layer")
        if mean.empty:
            continue
        drawn = True
        if heads:
            h = t[t.metric == metric]
            jitter = (h["head"].to_numpy(float) / max(float(h["head"].max() or 1), 1.0) - 0.5) * 0.25
            ax.scatter(
                h["layer"].to_numpy(float) + jitter, h["value"], s=9, color=colors[model], alpha=0.35, linewidths=0
            )
        ax.plot(mean["layer"], mean["value"], "o-", color=colors[model], label=model, ms=4)
    if not drawn:
        plt.close(fig)
        return []
    ax.set_xlabel("layer (block)")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save(fig, figdir, name)


@figure(
    "attention_distance",
    section="attention",
    order=20,
    title="Fig. 3a: average attention distance per layer (pixels of the model's input)",
)
def plot_distance(results: Dict[str, ProbeResult], colors: Dict[str, str], figdir: Path) -> List[Path]:
    return _per_layer_plot(
        results,
        colors,
        "attention_distance",
        "attention distance (px)",
        "Average attention distance",
        figdir,
        "fig3a_attention_distance",
    )


@figure(
    "attention_nmi",
    section="attention",
    order=30,
    title="Fig. 6a: normalised mutual information between queries and keys per layer",
)
def plot_nmi(results: Dict[str, ProbeResult], colors: Dict[str, str], figdir: Path) -> List[Path]:
    return _per_layer_plot(
        results, colors, "attention_nmi", "NMI", "Normalised mutual information", figdir, "fig6a_attention_nmi"
    )


@figure(
    "attention_entropy", section="attention", order=40, title="Fig. 10: attention entropy per head per layer (nats)"
)
def plot_entropy(results: Dict[str, ProbeResult], colors: Dict[str, str], figdir: Path) -> List[Path]:
    return _per_layer_plot(
        results,
        colors,
        "attention_entropy",
        "attention entropy (nats)",
        "Attention entropy of each head",
        figdir,
        "fig10_attention_entropy",
    )


def _panel(image: np.ndarray, amap: np.ndarray, box: tuple) -> np.ndarray:
    """(S, S, 3) uint8 image, (rows, cols) map (or None), (x0, y0, x1, y1) box -> (S, S, 3) float."""
    base = image.astype(np.float32) / 255.0
    if amap is not None:
        side_y, side_x = base.shape[:2]
        up = amap[(np.arange(side_y) * amap.shape[0]) // side_y][:, (np.arange(side_x) * amap.shape[1]) // side_x]
        span = float(up.max() - up.min())
        heat = _CMAP((up - up.min()) / span if span > 0 else np.zeros_like(up))[..., :3]  # per-map contrast
        base = 0.4 * base + 0.6 * heat
    x0, y0, x1, y1 = box
    w = max(1, base.shape[0] // 80)  # line width: visible at any image size
    red = np.array([1.0, 0.0, 0.0])
    base[y0:y1, x0 : x0 + w] = base[y0:y1, x1 - w : x1] = red
    base[y0 : y0 + w, x0:x1] = base[y1 - w : y1, x0:x1] = red
    return base


_CMAP = plt.get_cmap("inferno")


@figure(
    "attention_map",
    section="attention",
    order=10,
    title="Fig. 2: attention maps (mean over heads) of the query patches in the red boxes",
)
def plot_maps(results: Dict[str, ProbeResult], colors: Dict[str, str], figdir: Path) -> List[Path]:
    """One figure per model: a row per (image, query), the image with the query box, then the map of
    each kept layer. Panels are composed as one pixel array (one imshow: fast for many panels)."""
    paths: List[Path] = []
    for model, res in results.items():
        if "maps" not in res.arrays or "images" not in res.arrays:
            continue
        maps, images = res.arrays["maps"], res.arrays["images"]  # (I, L, H, Q, r, c), (I, S, S, 3)
        layers, queries = res.arrays["layers"], res.arrays["queries"]  # (L,), (Q, 2) (column, row)
        n_img, n_layer, _, n_q, rows, cols = maps.shape
        side, gap = images.shape[1], max(2, images.shape[1] // 16)
        cell = side + gap
        canvas = np.ones((n_img * n_q * cell - gap, (1 + n_layer) * cell - gap, 3), dtype=np.float32)
        for a in range(n_img):
            for q in range(n_q):
                c, j = int(queries[q][0]), int(queries[q][1])
                box = (c * side // cols, j * side // rows, (c + 1) * side // cols, (j + 1) * side // rows)
                r0 = (a * n_q + q) * cell
                for k in range(1 + n_layer):
                    amap = None if k == 0 else maps[a, k - 1, :, q].mean(0)
                    canvas[r0 : r0 + side, k * cell : k * cell + side] = _panel(images[a], amap, box)
        h_in = 1.4 * n_img * n_q
        fig, ax = plt.subplots(figsize=(1.4 * (1 + n_layer), h_in + 0.4))
        ax.imshow(canvas, interpolation="nearest")
        for k, label in enumerate(["image + query"] + [f"layer {int(l)}" for l in layers]):
            ax.text(k * cell + side / 2, -gap, label, ha="center", va="bottom", fontsize=7)
        ax.set_title(model, fontsize=9, color=colors[model], pad=20)
        ax.axis("off")
        paths += save(fig, figdir, f"fig2_attention_map_{model}")
    return paths


__all__ = ["plot_distance", "plot_nmi", "plot_entropy", "plot_maps"]
