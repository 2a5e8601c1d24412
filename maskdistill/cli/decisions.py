"""``maskdistill decisions``: shape bias, out-of-distribution accuracy and error consistency (paper
Figs. 11, 12) of existing response files -- human observers, model-vs-human's model zoo,
texture-vs-shape's CNNs, or the outputs of ``maskdistill analyze`` -- laid out as in
model-vs-human: ``RAW/<dataset>/<dataset>_<observer>_session_1.csv``.

Writes to ``--out`` (default ``analysis/decisions``): ``shape_bias.csv`` (per observer and shape
category, for cue-conflict sets: folders whose image names are all ``<shape><i>-<texture><j>.png``),
``accuracy.csv`` (per observer, dataset, condition), ``consistency.csv`` (kappa, observed and expected
consistency for every observer-human pair per dataset and condition), ``excluded.csv`` (controls and
conditions where humans are at or below 0.2), ``summary.csv`` (Fig. 12: OOD accuracy, observed and error
consistency, accuracy difference per observer; ``humans`` = the human-human baseline) and the figures.

example:
  maskdistill decisions --raw-data model-vs-human/raw-data --out analysis/decisions
  maskdistill decisions --raw-data model-vs-human/raw-data --datasets cue-conflict,edge --no-figures
"""

from __future__ import annotations

import argparse
from pathlib import Path

from maskdistill.cli.common import command_parser


def register(subparsers: argparse._SubParsersAction) -> None:
    p = command_parser(subparsers, "decisions", "shape bias, accuracy and error consistency of response files", __doc__)
    p.add_argument(
        "--raw-data",
        required=True,
        type=Path,
        help="folder of <dataset>/<dataset>_<observer>_session_1.csv files (model-vs-human raw-data)",
    )
    p.add_argument("--out", type=Path, default=Path("analysis/decisions"), help="output folder")
    p.add_argument("--datasets", default="", help="comma-separated dataset folders (default: all)")
    p.add_argument("--no-figures", action="store_true", help="write the tables only")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from maskdistill.probes.decisions.summary import summarise_folder

    tables = summarise_folder(args.raw_data, args.out, args.datasets)
    if not args.no_figures:
        from maskdistill.report.plots.decisions import plot_decision_tables  # matplotlib: only for figures

        plot_decision_tables(tables, args.out)
    if "summary" in tables:
        print(tables["summary"].to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    if "shape_bias" in tables:
        sb = tables["shape_bias"]
        print(sb.loc[sb["category"] == "all", ["dataset", "subj", "shape_bias"]].to_string(index=False))
    print(f"tables and figures in {args.out}")
    return 0


__all__ = ["register", "run"]
