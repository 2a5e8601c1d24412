"""How probe families plug into ``maskdistill report`` (the figures of paper Secs. 3-5). Plotting
lives in report/ and reads only saved results: a family registers, per probe, the figures that draw
its saved results and, optionally, a per-layer table; figures are grouped into report sections.

    @section("attention", "Attention (Sec. 3)", order=10)
    @figure("attention_distance", section="attention", title="Fig. 3a ...")
    def plot(results: dict[str, ProbeResult], colors: dict[str, str], figdir: Path) -> list[Path]: ...

A figure function receives every model's result of its probe (model name -> ProbeResult, in report
order) and a fixed colour per model, writes PNG + PDF under ``figdir`` and returns their paths (an
empty list when there is nothing to draw). Plot modules are found by name: every module of
``maskdistill/report/plots/`` listed in :data:`PLOT_MODULES` is imported by
:func:`load_plot_modules`, so a new family adds its file and its name there. Probes without a
registered figure still appear in the report as tables.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional

import pandas as pd

FigureFn = Callable[..., List[Path]]
TableFn = Callable[..., Optional[pd.DataFrame]]


@dataclass(frozen=True)
class SectionSpec:
    key: str
    title: str
    order: int = 100
    intro: str = ""


@dataclass(frozen=True)
class FigureSpec:
    probe: str
    name: str
    fn: FigureFn
    title: str
    section: str
    order: int


_SECTIONS: Dict[str, SectionSpec] = {"other": SectionSpec("other", "Other results", 1000)}
_FIGURES: Dict[str, FigureSpec] = {}
_TABLES: Dict[str, TableFn] = {}


def section(key: str, title: str, order: int = 100, intro: str = "") -> SectionSpec:
    """Declare a report section (idempotent: the last declaration wins)."""
    _SECTIONS[key] = SectionSpec(key, title, order, intro)
    return _SECTIONS[key]


def figure(
    probe: str, name: Optional[str] = None, title: str = "", section: str = "other", order: int = 100
) -> Callable[[FigureFn], FigureFn]:
    """Register ``fn(results, colors, figdir) -> [paths]`` as a figure of ``probe``'s results."""

    def deco(fn: FigureFn) -> FigureFn:
        key = name or probe
        if key in _FIGURES and _FIGURES[key].fn is not fn:
            raise ValueError(f"a report figure named {key!r} is registered already ({_FIGURES[key].fn.__module__}).")
        _FIGURES[key] = FigureSpec(probe, key, fn, title or key, section, order)
        return fn

    return deco


def layer_table(probe: str) -> Callable[[TableFn], TableFn]:
    """Register ``fn(result) -> DataFrame`` (index: layer; columns: numbers) for the per-layer
    table of each model; probes without one get :func:`default_layer_table`."""

    def deco(fn: TableFn) -> TableFn:
        _TABLES[probe] = fn
        return fn

    return deco


def default_layer_table(result) -> Optional[pd.DataFrame]:
    """Rows of a tidy table that carry a ``layer`` and no other index (per-layer scalars), as
    layer x metric; None when the result has no such rows. (Their intervals are in the CSV and on
    the figures.)"""
    t = result.table
    if "layer" not in t.columns:
        return None
    other = [c for c in t.columns if c not in ("model", "layer", "metric", "value", "ci_low", "ci_high")]
    per_layer = t[t[other].isna().all(axis=1)] if other else t
    if per_layer.empty:
        return None
    return per_layer.pivot_table(index="layer", columns="metric", values="value", aggfunc="mean")


# The figure families: each module of ``maskdistill.report.plots`` registers its figures and tables.
PLOT_MODULES = ("attention", "spectra", "hessian")


def load_plot_modules() -> None:
    """Import every figure family in :data:`PLOT_MODULES` so that its registrations run."""
    for name in PLOT_MODULES:
        importlib.import_module(f"maskdistill.report.plots.{name}")


def figures() -> List[FigureSpec]:
    load_plot_modules()
    order = lambda f: (_SECTIONS.get(f.section, _SECTIONS["other"]).order, f.order, f.name)  # noqa: E731
    return sorted(_FIGURES.values(), key=order)


def sections() -> Dict[str, SectionSpec]:
    load_plot_modules()
    return dict(_SECTIONS)


def table_fn(probe: str) -> TableFn:
    load_plot_modules()
    return _TABLES.get(probe, default_layer_table)


__all__ = [
    "SectionSpec",
    "FigureSpec",
    "section",
    "figure",
    "layer_table",
    "default_layer_table",
    "load_plot_modules",
    "figures",
    "sections",
    "table_fn",
]
