"""Figures of the attention probes, with the paper's axes (Sec. 3): Fig. 2 attention maps of query
patches overlaid on the images; Fig. 3a average attention distance (pixels) per layer; Fig. 6a NMI
per layer; Fig. 10 attention entropy per head per layer. Models are overlaid in their fixed colour:
small dots are heads, the line is the mean over heads. Reads only saved results."""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List

import numpy as np
from matplotlib.axes import Axes

from maskdistill.probes.core.registry import ProbeResult
from maskdistill.report.plots.lines import Extra, LayerLines
from maskdistill.report.registry import figure, section
from maskdistill.report.style import plt, safe_name, save_figure

section(
    "attention",
    "Attention (Sec. 3)",
    order=10,
    intro="Post-softmax attention with prefix tokens dropped and rows renormalised; layer i is the "
    "attention inside block i. Dots: heads; lines: mean over heads.",
)


def _heads(metric: str) -> Extra:
    """Each head's value (the rows of ``metric``) as a small dot, spread a little around its layer
    so that the heads of one layer stay apart."""

    def draw(ax: Axes, res: ProbeResult, color: str) -> None:
        h = res.table[res.table.metric == metric]
        jitter = (h["head"].to_numpy(float) / max(float(h["head"].max() or 1), 1.0) - 0.5) * 0.25
        ax.scatter(h["layer"].to_numpy(float) + jitter, h["value"], s=9, color=color, alpha=0.35, linewidths=0)

    return draw


# (probe, report order, report caption, figure file, y label, plot title). A probe's table holds each
# head's value per layer as metric ``<probe>`` and the mean over heads as ``<probe>_layer_mean``.
PER_LAYER = (
    (
        "attention_distance",
        20,
        "Fig. 3a: average attention distance per layer (pixels of the model's input)",
        "fig3a_attention_distance",
        "attention distance (px)",
        "Average attention distance",
    ),
    (
        "attention_nmi",
        30,
        "Fig. 6a: normalised mutual information between queries and keys per layer",
        "fig6a_attention_nmi",
        "NMI",
        "Normalised mutual information",
    ),
    (
        "attention_entropy",
        40,
        "Fig. 10: attention entropy per head per layer (nats)",
        "fig10_attention_entropy",
        "attention entropy (nats)",
        "Attention entropy of each head",
    ),
)


def _per_layer_figure(probe: str, order: int, caption: str, file: str, ylabel: str, title: str) -> LayerLines:
    """Register the figure of ``probe``: heads as dots, the mean over heads as a line per model."""
    lines = LayerLines(
        file=file, xlabel="layer (block)", ylabel=ylabel, title=title, metric=f"{probe}_layer_mean", extra=_heads(probe)
    )
    return figure(probe, section="attention", order=order, title=caption)(lines)


plot_distance, plot_nmi, plot_entropy = (_per_layer_figure(*row) for row in PER_LAYER)


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
        paths += save_figure(fig, figdir / safe_name(f"fig2_attention_map_{model}"))
    return paths


__all__ = ["plot_distance", "plot_nmi", "plot_entropy", "plot_maps"]
