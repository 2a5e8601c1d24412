"""Figures of the decision probes (paper Sec. 5 and App. C): the shape-bias plot per category with
observers and models (Fig. 11, in the style of Geirhos et al. 2019/2021: fraction of shape decisions
on the top axis, texture decisions on the bottom axis, one row per shape category, a vertical line at
each observer's overall bias), accuracy and error consistency per condition for the parametric sets,
and the Fig. 12 summary (OOD accuracy, observed consistency, error consistency per observer).

Plain functions ``plot_xxx(df_or_results, out_prefix) -> [png, pdf]``; they read saved tables only
(``maskdistill decisions`` outputs or the probes' ``ProbeResult``), so figures regenerate without a
model. Human observers (``subject-XX``) are pooled as "humans" (red diamonds, as in the papers).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Sequence

import numpy as np
import pandas as pd

from maskdistill.probes.decisions.responses import condition_key, is_human
from maskdistill.report.style import PALETTE, plt, save_figure

HUMAN_COLOR = "#d62728"


def _frame(x: Any) -> pd.DataFrame:
    """A DataFrame, a ProbeResult, or {name: ProbeResult} -> one DataFrame with an ``observer`` column."""
    if isinstance(x, pd.DataFrame):
        return x
    if hasattr(x, "table"):
        return x.table if "observer" in x.table.columns else x.table.assign(observer=x.model)
    if isinstance(x, dict):
        return pd.concat([_frame(v) for v in x.values()], ignore_index=True)
    raise TypeError(f"expected a DataFrame or ProbeResult(s), got {type(x).__name__}.")


def _observer_styles(names: Sequence[str]) -> Dict[str, Dict[str, Any]]:
    models = [n for n in names if n != "humans"]
    st = {
        m: {
            "color": PALETTE[(i + 1) % len(PALETTE)] if PALETTE[(i + 1) % len(PALETTE)] != HUMAN_COLOR else PALETTE[0],
            "marker": "o",
        }
        for i, m in enumerate(models)
    }
    st["humans"] = {"color": HUMAN_COLOR, "marker": "D"}
    return st


def _shape_bias_wide(x: Any) -> pd.DataFrame:
    """-> columns observer, category, shape_bias (humans: mean over human observers per category)."""
    df = _frame(x)
    if "metric" in df.columns:  # a shape_bias ProbeResult table
        df = df.loc[df["metric"] == "shape_bias"].rename(columns={"value": "shape_bias"})
    who = df["observer"] if "observer" in df.columns else df["subj"]
    df = df.assign(observer=np.where(who.map(is_human), "humans", who))
    return df.groupby(["observer", "category"], as_index=False)["shape_bias"].mean()


def plot_shape_bias(df_or_results: Any, out_prefix: str | Path) -> List[Path]:
    """Fig. 11: per shape category (rows) each observer's fraction of shape decisions among shape +
    texture decisions; vertical lines: overall bias (category ``all``)."""
    df = _shape_bias_wide(df_or_results)
    cats = sorted(c for c in df["category"].unique() if c != "all")
    observers = ["humans"] * ("humans" in set(df["observer"])) + sorted(
        o for o in df["observer"].unique() if o != "humans"
    )
    styles = _observer_styles(observers)
    if "humans" in observers:  # order rows by the humans' bias, as model-vs-human does
        h = df.loc[(df["observer"] == "humans") & df["category"].isin(cats)].set_index("category")["shape_bias"]
        cats = sorted(cats, key=lambda c: -h.get(c, 0.0))
    fig, ax = plt.subplots(figsize=(6.4, 0.32 * len(cats) + 1.6))
    y = {c: i for i, c in enumerate(cats)}
    for o in observers:
        d = df.loc[df["observer"] == o]
        per = d.loc[d["category"].isin(cats)]
        ax.scatter(
            1.0 - per["shape_bias"],
            per["category"].map(y),
            color=styles[o]["color"],
            marker=styles[o]["marker"],
            s=30,
            label=o,
            zorder=3,
            edgecolors="none",
        )
        overall = d.loc[d["category"] == "all", "shape_bias"]
        if len(overall):
            ax.axvline(1.0 - float(overall.iloc[0]), color=styles[o]["color"], lw=1, alpha=0.8)
    ax.set_yticks(range(len(cats)), cats)
    ax.set_ylim(-0.6, len(cats) - 0.4)
    ax.set_xlim(0, 1)
    ax.invert_yaxis()
    ax.set_xlabel("fraction of 'texture' decisions")
    top = ax.secondary_xaxis("top", functions=(lambda v: 1 - v, lambda v: 1 - v))
    top.set_xlabel("fraction of 'shape' decisions")
    for i in range(len(cats) - 1):
        ax.axhline(i + 0.5, color="grey", lw=0.5, ls=":", alpha=0.5)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5), frameon=False)
    return save_figure(fig, out_prefix)


def _condition_order(dataset: str, conds: Sequence[str]) -> List[str]:
    from maskdistill.data.distortions import CONDITIONS

    ref = [condition_key(c) for c in CONDITIONS.get(dataset, ())]
    return sorted(conds, key=lambda c: (ref.index(condition_key(c)) if condition_key(c) in ref else len(ref), str(c)))


def plot_condition_curves(df_or_results: Any, out_prefix: str | Path, metric: str = "accuracy") -> List[Path]:
    """Per parametric dataset, ``metric`` against the condition for every observer (humans pooled).

    ``metric="accuracy"``: an accuracy table (``subj, dataset, condition, accuracy``) or an
    ``ood_accuracy`` result; ``metric="kappa"`` (error consistency with humans, averaged over humans): a
    pairs table (``observer, human, dataset, condition, kappa``) or an ``error_consistency`` result."""
    df = _frame(df_or_results)
    if "metric" in df.columns:
        keep = (df["metric"] == metric) & df["condition"].ne("kept")
        if "human" in df.columns:
            keep &= df["human"].ne("all")
        df = df.loc[keep]
        df = df.rename(columns={"value": metric})
    who = df["observer"] if "observer" in df.columns else df["subj"]
    df = df.assign(who=np.where(who.map(is_human), "humans", who))
    df = df.loc[df.groupby("dataset")["condition"].transform("nunique") > 1]  # parametric sets only
    if df.empty:
        return []
    datasets = sorted(df["dataset"].unique())
    observers = ["humans"] * ("humans" in set(df["who"])) + sorted(o for o in df["who"].unique() if o != "humans")
    styles = _observer_styles(observers)
    cols = min(4, len(datasets))
    rows = -(-len(datasets) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.0 * cols, 2.5 * rows), squeeze=False)
    for ax, ds in zip(axes.flat, datasets):
        d = df.loc[df["dataset"] == ds]
        order = _condition_order(ds, list(d["condition"].unique()))
        for o in observers:
            v = d.loc[d["who"] == o].groupby("condition")[metric].mean()
            if v.empty:
                continue
            xs = [i for i, c in enumerate(order) if c in v.index]
            ax.plot(
                xs, [v[order[i]] for i in xs], marker=styles[o]["marker"], color=styles[o]["color"], ms=4, lw=1, label=o
            )
        ax.set_xticks(range(len(order)), order, rotation=45, fontsize=7)
        ax.set_title(ds, fontsize=9)
        ax.axhline(1 / 16 if metric == "accuracy" else 0.0, color="grey", ls=":", lw=0.8)
        ax.set_ylim(0 if metric == "accuracy" else -0.2, 1)
    for ax in list(axes.flat)[len(datasets) :]:
        ax.axis("off")
    axes.flat[0].set_ylabel("16-class accuracy" if metric == "accuracy" else "error consistency (kappa)")
    axes.flat[0].legend(fontsize=6)
    return save_figure(fig, out_prefix)


def plot_summary(df_or_results: Any, out_prefix: str | Path) -> List[Path]:
    """Fig. 12: bars of OOD accuracy, observed consistency and error consistency per observer (sorted;
    humans in red). Input: the ``summary`` table or ``error_consistency`` result(s)."""
    df = _frame(df_or_results)
    if "metric" in df.columns:  # error_consistency results: their human="all" rows
        rows = df.loc[df["human"] == "all"]
        df = rows.pivot_table(index="observer", columns="metric", values="value").reset_index()
    metrics = [
        ("ood_accuracy", "OOD accuracy"),
        ("observed_consistency", "observed consistency"),
        ("error_consistency", "error consistency"),
    ]
    fig, axes = plt.subplots(1, 3, figsize=(10, 3.2))
    for ax, (m, label) in zip(axes, metrics):
        if m not in df.columns:
            ax.set_axis_off()
            continue
        d = df[["observer", m]].dropna().sort_values(m, ascending=False)
        colors = [HUMAN_COLOR if o == "humans" else PALETTE[0] for o in d["observer"]]
        ax.bar(range(len(d)), d[m], color=colors)
        ax.set_xticks(range(len(d)), d["observer"], rotation=90, fontsize=7)
        ax.set_ylabel(label)
        ax.axhline(0, color="black", lw=0.5)
    return save_figure(fig, out_prefix)


def plot_decision_tables(tables: Dict[str, pd.DataFrame], out: Path) -> List[Path]:
    """The figures of :func:`maskdistill.probes.decisions.summary.summarise_folder`'s tables: shape
    bias per cue-conflict dataset, accuracy and error consistency per condition, the Fig. 12 summary."""
    written: List[Path] = []
    if "shape_bias" in tables:
        for d, g in tables["shape_bias"].groupby("dataset"):
            written += plot_shape_bias(g, out / f"{d}_shape_bias")
    written += plot_condition_curves(tables["accuracy"], out / "accuracy_per_condition", metric="accuracy")
    if "consistency" in tables:
        written += plot_condition_curves(tables["consistency"], out / "error_consistency_per_condition", metric="kappa")
        written += plot_summary(tables["summary"], out / "summary")
    return written


__all__ = ["plot_condition_curves", "plot_decision_tables", "plot_shape_bias", "plot_summary"]
