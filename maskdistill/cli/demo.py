"""``maskdistill demo``: the whole method of the paper (Sec. 2, Eq. 1) on the built-in shapes x
textures images, in CPU minutes. It trains a small supervised ViT teacher, masked-distils a
BEiT-style student from it, evaluates frozen features (k-NN and linear probe) of the student, of the
same architecture at random initialisation and of the teacher, fine-tunes teacher and student on the
shape labels, and prints the table (also written to ``OUT/results.md`` and ``OUT/results.json``).
Stages already finished in ``--out`` are reused.

example:
  maskdistill demo
  maskdistill demo --out runs/demo --overwrite
"""

from __future__ import annotations

import argparse
from pathlib import Path

from maskdistill.cli.common import command_parser, setup_logging


def register(subparsers: argparse._SubParsersAction) -> None:
    p = command_parser(subparsers, "demo", "teacher -> MD student -> frozen-feature table, on built-in data", __doc__)
    p.add_argument("--out", type=Path, default=Path("runs/demo"), help="demo folder (default runs/demo)")
    p.add_argument("--overwrite", action="store_true", help="retrain stages already in --out")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from maskdistill.train.demo import run_demo

    setup_logging()
    run_demo(args.out, overwrite=args.overwrite)
    return 0


__all__ = ["register", "run"]
