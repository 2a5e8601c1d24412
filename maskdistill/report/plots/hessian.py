"""Figures of the optimisation-geometry probes (paper Sec. 4, Fig. 7): the loss landscape along the
top-2 Hessian eigenvectors as a 3-D surface and as a contour map (Figs. 7a/b/d/e), the Hessian
eigenvalue density (PyHessian's semilog plot), λ₁/λ₂ and the trace per model (and per block), and
|λ₁| and the trace during fine-tuning from runs' ``metrics_sharpness.csv`` (Figs. 7c/f).

Plain functions ``plot_xxx(results | table, out_prefix) -> [png, pdf]`` read only saved results; the
first four are also registered as report figures of their probes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import pandas as pd

from maskdistill.probes.core.registry import ProbeResult
from maskdistill.report.registry import figure, section
from maskdistill.report.style import model_colors, plt, save_figure

section(
    "geometry",
    "Optimisation geometry (Sec. 4)",
    order=40,
    intro="Hessian of the cross-entropy on a fixed labelled batch, eval mode, eager attention. "
    "Eigenvalues by Lanczos (sorted by magnitude, sign kept); trace by Hutchinson (± 95 % CI); "
    "landscapes along the unit top-2 eigenvectors (no filter normalisation).",
)

Results = Union[Sequence[ProbeResult], Mapping[str, ProbeResult]]


def _as_dict(results: Results) -> Dict[str, ProbeResult]:
    return dict(results) if isinstance(results, Mapping) else {r.model: r for r in results}


def _whole(t: pd.DataFrame) -> pd.DataFrame:
    """Rows about the whole network (results without per-block rows have no ``block`` column)."""
    return t[t["block"] == "all"] if "block" in t.columns else t


def _with_colors(results: Results, colors: Optional[Dict[str, str]]) -> Tuple[Dict[str, ProbeResult], Dict[str, str]]:
    """The results by model and a colour for each: the given ones, the report's palette for the rest."""
    res = _as_dict(results)
    return res, dict(model_colors(list(res)), **(colors or {}))


def _label(model: str, res: ProbeResult) -> str:
    """The model's name, flagged when its solver stopped before its tolerance (meta ``converged``)."""
    return f"{model} (not converged)" if res.meta.get("converged") is False else model


def _yerr(t: pd.DataFrame) -> Optional[np.ndarray]:
    """(2, n) distances to ``ci_low``/``ci_high`` of the rows ``t`` (None without interval columns)."""
    if not {"ci_low", "ci_high"} <= set(t.columns) or t[["ci_low", "ci_high"]].isna().all().all():
        return None
    v = t["value"].to_numpy(float)
    return np.abs(np.stack([v - t["ci_low"].to_numpy(float), t["ci_high"].to_numpy(float) - v]))


def _surface(res: ProbeResult) -> tuple:
    if "loss" in res.arrays:
        return np.asarray(res.arrays["alpha"]), np.asarray(res.arrays["beta"]), np.asarray(res.arrays["loss"])
    t = res.table[res.table.metric == "loss"]
    grid = t.pivot_table(index="alpha", columns="beta", values="value")  # rows: alpha, columns: beta
    return grid.index.to_numpy(), grid.columns.to_numpy(), grid.to_numpy()


def plot_loss_landscape(results: Results, out_prefix: Path) -> List[Path]:
    """One column per model: the 3-D surface (top) and its contour map (bottom), shared colour scale."""
    res = _as_dict(results)
    if not res:
        return []
    fig = plt.figure(figsize=(4.2 * len(res), 7.0))
    surfaces = {m: _surface(r) for m, r in res.items()}
    lo = min(float(np.nanmin(s[2])) for s in surfaces.values())
    hi = max(float(np.nanmax(s[2])) for s in surfaces.values())
    for i, (model, (a, b, loss)) in enumerate(surfaces.items()):
        A, B = np.meshgrid(a, b, indexing="ij")  # loss[i, j] at (alpha[i], beta[j])
        ax = fig.add_subplot(2, len(res), i + 1, projection="3d")
        ax.plot_surface(A, B, loss, cmap="viridis", vmin=lo, vmax=hi, linewidth=0, antialiased=True)
        ax.set_xlabel("α (v₁)", fontsize=8)
        ax.set_ylabel("β (v₂)", fontsize=8)
        ax.set_zlabel("loss", fontsize=8)
        ax.set_zlim(lo, hi)
        eig = res[model].meta.get("eigenvalues")
        sub = f"\nλ₁={eig[0]:.3g}, λ₂={eig[1]:.3g}" if eig else ""
        ax.set_title(f"{_label(model, res[model])}{sub}", fontsize=9)
        ax2 = fig.add_subplot(2, len(res), len(res) + i + 1)
        cs = ax2.contourf(A, B, loss, levels=20, cmap="viridis", vmin=lo, vmax=hi)
        ax2.contour(A, B, loss, levels=20, colors="k", linewidths=0.3)
        ax2.plot([0], [0], "r+", ms=8)
        ax2.set_xlabel("α (v₁)")
        ax2.set_ylabel("β (v₂)")
        ax2.set_aspect("equal")
        fig.colorbar(cs, ax=ax2, shrink=0.8, label="loss")
    return save_figure(fig, out_prefix)


def plot_eigen_density(results: Results, out_prefix: Path, colors: Optional[Dict[str, str]] = None) -> List[Path]:
    """Density of Hessian eigenvalues on a log scale (as PyHessian plots it), models overlaid."""
    res, colors = _with_colors(results, colors)
    if not res:
        return []
    fig, ax = plt.subplots(figsize=(5.0, 3.6))
    for model, r in res.items():
        t = r.table[r.table.metric == "density"].sort_values("eigenvalue")
        ax.semilogy(t["eigenvalue"], np.maximum(t["value"], 1e-12), color=colors[model], label=model, lw=1)
    ax.set_ylim(1e-10, 1e2)
    ax.set_xlabel("eigenvalue")
    ax.set_ylabel("density (log scale)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save_figure(fig, out_prefix)


def plot_top_eigenvalues(results: Results, out_prefix: Path, colors: Optional[Dict[str, str]] = None) -> List[Path]:
    """λ₁, λ₂ of the whole network per model; with per-block rows, λ₁ per block (log |λ|)."""
    res, colors = _with_colors(results, colors)
    if not res:
        return []
    blocks = any("block" in r.table.columns and (r.table["block"] != "all").any() for r in res.values())
    fig, axes = plt.subplots(1, 2 if blocks else 1, figsize=(9.0 if blocks else 4.2, 3.4), squeeze=False)
    ax = axes[0, 0]
    width = 0.8 / len(res)
    for i, (model, r) in enumerate(res.items()):
        t = _whole(r.table)
        t = t[t.metric == "eigenvalue"].sort_values("index")
        x = t["index"].to_numpy() + i * width
        ax.bar(x, t["value"], width, yerr=_yerr(t), capsize=3, color=colors[model], label=_label(model, r))
    ax.set_xticks(np.arange(2) + 0.4 - width / 2)
    ax.set_xticklabels(["λ₁", "λ₂"])
    ax.set_ylabel("eigenvalue")
    ax.legend(fontsize=8)
    if blocks:
        ax = axes[0, 1]
        for model, r in res.items():
            t = r.table[(r.table.metric == "eigenvalue") & (r.table.block != "all") & (r.table["index"] == 0)]
            ax.plot(range(len(t)), np.abs(t["value"]), "o-", color=colors[model], label=model, ms=4)
            ax.set_xticks(range(len(t)))
            ax.set_xticklabels(t["block"], rotation=60, fontsize=7)
        ax.set_yscale("log")
        ax.set_ylabel("|λ₁| of the block")
    return save_figure(fig, out_prefix)


def plot_trace(results: Results, out_prefix: Path, colors: Optional[Dict[str, str]] = None) -> List[Path]:
    """Hutchinson's trace per model with its 95 % interval (the model flagged if not converged)."""
    res, colors = _with_colors(results, colors)
    if not res:
        return []
    fig, ax = plt.subplots(figsize=(1.2 + 0.9 * len(res), 3.4))
    for i, (model, r) in enumerate(res.items()):
        t = _whole(r.table)
        t = t[t.metric == "trace"]
        err = _yerr(t)
        if err is None:  # results saved before the interval columns: 1.96 SE
            se = _whole(r.table).set_index("metric")["value"].get("trace_se", 0.0)
            err = np.full((2, 1), 1.96 * se)
        ax.bar(i, t["value"], 0.6, yerr=err, color=colors[model], capsize=4)
    ax.set_xticks(range(len(res)))
    ax.set_xticklabels([_label(m, r) for m, r in res.items()], rotation=30, fontsize=8)
    ax.set_ylabel("tr(H)")
    return save_figure(fig, out_prefix)


def load_sharpness(runs: Mapping[str, Union[str, Path]]) -> pd.DataFrame:
    """``{label: run_dir}`` -> one table of every run's ``metrics_sharpness.csv`` with a ``run`` column."""
    frames = []
    for label, run in runs.items():
        path = Path(run) / "metrics_sharpness.csv"
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing: fine-tune with eval.sharpness_every > 0 to log sharpness.")
        frames.append(pd.read_csv(path).assign(run=label))
    return pd.concat(frames, ignore_index=True)


def plot_sharpness(table: pd.DataFrame, out_prefix: Path) -> List[Path]:
    """Fig. 7c (|λ₁| against the step) and Fig. 7f (the trace, ± 95 % CI), one line per run."""
    if table.empty:
        return []
    runs = list(dict.fromkeys(table["run"])) if "run" in table else ["run"]
    table = table if "run" in table else table.assign(run="run")
    colors = model_colors(runs)
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(9.0, 3.4))
    for run in runs:
        t = table[table.run == run].sort_values("step")
        lam = t["abs_lambda_1"] if "abs_lambda_1" in t else t["lambda_1"].abs()
        a1.plot(t["step"], lam, "o-", ms=3, color=colors[run], label=run)
        if "trace" in t:
            a2.plot(t["step"], t["trace"], "o-", ms=3, color=colors[run], label=run)
            if "trace_se" in t:
                a2.fill_between(
                    t["step"],
                    t["trace"] - 1.96 * t["trace_se"],
                    t["trace"] + 1.96 * t["trace_se"],
                    color=colors[run],
                    alpha=0.2,
                    lw=0,
                )
    a1.set_ylabel("|λ₁| (sharpness)")
    a2.set_ylabel("tr(H)")
    for ax in (a1, a2):
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return save_figure(fig, out_prefix)


def _registered(fn, name: str, with_colors: bool = True):
    def draw(results: Dict[str, ProbeResult], colors: Dict[str, str], figdir: Path) -> List[Path]:
        if with_colors:
            return fn(results, Path(figdir) / name, colors=colors)
        return fn(results, Path(figdir) / name)

    return draw


figure(
    "loss_landscape_2d",
    title="Fig. 7a/b/d/e: loss landscape along the top-2 Hessian eigenvectors",
    section="geometry",
    order=10,
)(_registered(plot_loss_landscape, "loss_landscape_2d", with_colors=False))
figure(
    "hessian_top_eigs", title="Top Hessian eigenvalues (λ₁, λ₂; per block when measured)", section="geometry", order=20
)(_registered(plot_top_eigenvalues, "hessian_top_eigs"))
figure("hessian_trace", title="Hessian trace (Hutchinson, 95 % CI)", section="geometry", order=30)(
    _registered(plot_trace, "hessian_trace")
)
figure(
    "hessian_density", title="Hessian eigenvalue density (stochastic Lanczos quadrature)", section="geometry", order=40
)(_registered(plot_eigen_density, "hessian_density"))

__all__ = [
    "plot_loss_landscape",
    "plot_eigen_density",
    "plot_top_eigenvalues",
    "plot_trace",
    "load_sharpness",
    "plot_sharpness",
]
