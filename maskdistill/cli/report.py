"""``maskdistill report``: the figures and ``DIR/report.html`` from the saved results of
``maskdistill analyze`` alone (no model is loaded, no GPU needed): every figure of the saved probes
(paper Secs. 3-4; PNG and PDF in ``DIR/figures/``, one colour per model) and the table of the paper's
claims for every teacher/student pair.
``--sharpness NAME=RUN`` adds the sharpness log of a fine-tuning run trained with
``eval.sharpness_every > 0`` to Fig. 7c/f; the log is copied into ``DIR``, so later calls keep it.

example:
  maskdistill report analysis/clip_vs_md
  maskdistill report analysis/clip_vs_md --pair clip=md --sharpness md=runs/ft_md --sharpness clip=runs/ft_clip
"""

from __future__ import annotations

import argparse
from pathlib import Path

from maskdistill.cli.common import command_parser, parse_pair, setup_logging


def register(subparsers: argparse._SubParsersAction) -> None:
    r = command_parser(
        subparsers, "report", "figures and report.html from saved analysis results (no model needed)", __doc__
    )
    r.add_argument("dir", type=Path, help="the --out folder of maskdistill analyze")
    r.add_argument("--pair", action="append", default=[], metavar="TEACHER=STUDENT", help="extra teacher/student pair")
    r.add_argument(
        "--sharpness",
        action="append",
        default=[],
        metavar="NAME=RUN",
        help="add a fine-tuning run's sharpness log (eval.sharpness_every > 0) to Fig. 7c/f; kept in DIR",
    )
    r.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from maskdistill.report import build_report

    setup_logging()
    runs = dict(parse_pair(s, "--sharpness", "md=runs/ft_md") for s in args.sharpness)
    path = build_report(args.dir, pairs=[parse_pair(p, "--pair", "clip=md") for p in args.pair], sharpness=runs)
    print(path)
    return 0


__all__ = ["register", "run"]
