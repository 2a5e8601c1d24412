"""Summaries of response files (paper Figs. 11, 12): human observers, model-vs-human's model zoo,
texture-vs-shape's CNNs or our own ``analyze`` outputs, in model-vs-human's layout
``DIR/<dataset>/<dataset>_<observer>_session_1.csv``. Shape bias per observer and shape category for
cue-conflict sets (folders whose image names are all ``<shape><i>-<texture><j>.png``), accuracy per
observer, dataset and condition, error consistency of every observer-human pair, the conditions
excluded (controls, and humans at or below 0.2), and the Fig. 12 summary per observer."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Dict, List

import pandas as pd

from maskdistill.probes.decisions.ood_summary import (
    accuracy_table,
    excluded_conditions,
    pairwise_consistency,
    summarise,
)
from maskdistill.probes.decisions.responses import is_human, read_responses
from maskdistill.probes.decisions.shape_bias import shape_bias

_CUE_CONFLICT_NAME = re.compile(r"^[a-z]+\d+-[a-z]+\d+\.png$")


def _dataset_folders(raw: Path, wanted: str) -> List[Path]:
    if not raw.is_dir():
        raise FileNotFoundError(f"--raw-data {raw} is not a folder.")
    folders = sorted(d for d in raw.iterdir() if d.is_dir() and any(d.glob("*.csv")))
    if wanted:
        names = [w.strip() for w in wanted.split(",") if w.strip()]
        missing = [n for n in names if not (raw / n).is_dir()]
        if missing:
            raise FileNotFoundError(
                f"--datasets {', '.join(missing)}: no such folder in {raw}; found {', '.join(d.name for d in folders)}."
            )
        folders = [raw / n for n in names]
    if not folders:
        raise FileNotFoundError(f"no <dataset>/*.csv response files in {raw}.")
    return folders


def summarise_folder(raw: Path, out: Path, datasets: str = "") -> Dict[str, pd.DataFrame]:
    """Read every response file under ``raw`` and write (and return) the tables ``{name: DataFrame}``:
    accuracy, excluded, shape_bias (cue-conflict sets), consistency and summary (with humans)."""
    frames = [read_responses(d) for d in _dataset_folders(raw, datasets)]
    resp = pd.concat(frames, ignore_index=True)
    humans = resp.loc[resp["subj"].map(is_human)]
    models = resp.loc[~resp["subj"].map(is_human)]
    ds = sorted(resp["dataset"].unique())
    tables = {"accuracy": accuracy_table(resp), "excluded": excluded_conditions(humans, ds)}
    conflict = [d for d, g in resp.groupby("dataset") if g["image_id"].str.match(_CUE_CONFLICT_NAME).all()]
    if conflict:
        tables["shape_bias"] = shape_bias(resp.loc[resp["dataset"].isin(conflict)], by=("dataset", "subj"))
    if len(humans):
        tables["consistency"] = pairwise_consistency(models, humans)
        tables["summary"] = summarise(tables["consistency"], resp, tables["excluded"])
    out.mkdir(parents=True, exist_ok=True)
    for name, df in tables.items():
        df.to_csv(out / f"{name}.csv", index=False)
    return tables


__all__ = ["summarise_folder"]
