"""``maskdistill decisions --raw-data DIR [--out DIR]``: summarise existing response files -- human
observers, model-vs-human's model zoo, texture-vs-shape's CNNs, or our own ``analyze`` outputs -- in
model-vs-human's layout ``DIR/<dataset>/<dataset>_<observer>_session_1.csv`` (paper Figs. 11, 12).

Writes to ``--out`` (default ``analysis/decisions``): ``shape_bias.csv`` (per observer and shape
category, for cue-conflict sets: folders whose image names are all ``<shape><i>-<texture><j>.png``),
``accuracy.csv`` (per observer, dataset, condition), ``consistency.csv`` (kappa, observed and expected
consistency for every observer-human pair per dataset and condition), ``excluded.csv`` (controls and
conditions where humans are at or below 0.2), ``summary.csv`` (Fig. 12: OOD accuracy, observed and error
consistency, accuracy difference per observer; ``humans`` = the human-human baseline) and the figures.
"""
from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import List

import pandas as pd

_CUE_CONFLICT_NAME = re.compile(r"^[a-z]+\d+-[a-z]+\d+\.png$")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("decisions", help="shape bias, accuracy and error consistency of response files",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--raw-data", required=True, type=Path,
                   help="folder of <dataset>/<dataset>_<observer>_session_1.csv files (model-vs-human raw-data)")
    p.add_argument("--out", type=Path, default=Path("analysis/decisions"), help="output folder")
    p.add_argument("--datasets", default="", help="comma-separated dataset folders (default: all)")
    p.add_argument("--no-figures", action="store_true", help="write the tables only")
    p.set_defaults(func=run)


def _dataset_folders(raw: Path, wanted: str) -> List[Path]:
    if not raw.is_dir():
        raise FileNotFoundError(f"--raw-data {raw} is not a folder.")
    folders = sorted(d for d in raw.iterdir() if d.is_dir() and any(d.glob("*.csv")))
    if wanted:
        names = [w.strip() for w in wanted.split(",") if w.strip()]
        missing = [n for n in names if not (raw / n).is_dir()]
        if missing:
            raise FileNotFoundError(f"--datasets {', '.join(missing)}: no such folder in {raw}; found "
                                    f"{', '.join(d.name for d in folders)}.")
        folders = [raw / n for n in names]
    if not folders:
        raise FileNotFoundError(f"no <dataset>/*.csv response files in {raw}.")
    return folders


def summarise_folder(raw: Path, out: Path, datasets: str = "", figures: bool = True) -> dict:
    """Library entry point of the command; returns ``{table name: DataFrame}`` and writes them all."""
    from ..probes.ood_summary import accuracy_table, excluded_conditions, pairwise_consistency, summarise
    from ..probes.responses import is_human, read_responses
    from ..probes.shape_bias import shape_bias
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
    if figures:
        from ..report import decision_plots as dp
        written: List[Path] = []
        if "shape_bias" in tables:
            for d, g in tables["shape_bias"].groupby("dataset"):
                written += dp.plot_shape_bias(g, out / f"{d}_shape_bias")
        written += dp.plot_condition_curves(tables["accuracy"], out / "accuracy_per_condition", metric="accuracy")
        if "consistency" in tables:
            written += dp.plot_condition_curves(tables["consistency"], out / "error_consistency_per_condition",
                                                metric="kappa")
            written += dp.plot_summary(tables["summary"], out / "summary")
        tables["figures"] = written
    return tables


def run(args: argparse.Namespace) -> int:
    tables = summarise_folder(args.raw_data, args.out, args.datasets, figures=not args.no_figures)
    if "summary" in tables:
        print(tables["summary"].to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    if "shape_bias" in tables:
        sb = tables["shape_bias"]
        print(sb.loc[sb["category"] == "all", ["dataset", "subj", "shape_bias"]].to_string(index=False))
    print(f"tables and figures in {args.out}")
    return 0


__all__ = ["register", "run", "summarise_folder"]
