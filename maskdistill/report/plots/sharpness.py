"""Sharpness during fine-tuning in the report (paper Sec. 4, Fig. 7c/7f).
``maskdistill report DIR --sharpness NAME=RUN`` copies the run's ``metrics_sharpness.csv``
(logged by ``train.sharpness.SharpnessCallback`` when fine-tuning with ``eval.sharpness_every > 0``)
to ``DIR/sharpness/NAME.csv``; every report of ``DIR`` then draws all the copied runs in one figure,
so the report regenerates from the analysis folder alone, as for the probes."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import List, Mapping, Union

import pandas as pd

from maskdistill.report.plots.hessian import load_sharpness, plot_sharpness

log = logging.getLogger(__name__)
SHARPNESS = "sharpness"
TITLE = "Fig. 7c/f: sharpness |λ₁| and Hessian trace during fine-tuning"


def import_sharpness(out: Union[str, Path], runs: Mapping[str, Union[str, Path]]) -> List[Path]:
    """Copy each fine-tuning run's sharpness log into ``out/sharpness/<name>.csv`` (a newer log of the
    same name replaces the older copy: the run folder stays the source)."""
    written = []
    for name, run in runs.items():
        if not name or "/" in name or name.startswith("."):
            raise ValueError(f"--sharpness {name}={run}: the name must be a plain file name (e.g. md_student).")
        table = load_sharpness({name: run}).drop(columns="run")  # names the fix when the log is missing
        path = Path(out) / SHARPNESS / f"{name}.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.is_file():
            log.info("replacing %s with the sharpness log of %s", path, run)
        table.to_csv(path, index=False)
        written.append(path)
    return written


def saved_sharpness(out: Union[str, Path]) -> pd.DataFrame:
    """Every copied run as one table with a ``run`` column (empty when none was imported)."""
    files = sorted((Path(out) / SHARPNESS).glob("*.csv"))
    if not files:
        return pd.DataFrame()
    return pd.concat([pd.read_csv(f).assign(run=f.stem) for f in files], ignore_index=True)


def draw_sharpness(out: Union[str, Path], figdir: Union[str, Path]) -> List[Path]:
    """Fig. 7c/f of the copied runs into ``figdir`` (PNG + PDF); nothing when none was imported."""
    return plot_sharpness(saved_sharpness(out), Path(figdir) / "fig7cf_sharpness")


__all__ = ["import_sharpness", "saved_sharpness", "draw_sharpness", "SHARPNESS", "TITLE"]
