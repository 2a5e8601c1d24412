"""``maskdistill demo``: the whole method of the paper (Sec. 2, Eq. 1) on the built-in shapes x
textures images, in CPU minutes. It trains a small supervised ViT teacher, masked-distils a
BEiT-style student from it, evaluates frozen features (k-NN and linear probe) of the student, of the
same architecture at random initialisation and of the teacher, fine-tunes teacher and student on the
shape labels, and prints the table (also written to ``OUT/results.md`` and ``OUT/results.json``).
It ends with the paper's analyses of those models in ``OUT/analysis/``: teacher vs MD student
(attention, spectra, Fourier) and the two fine-tunes (Hessian, landscape, shape bias), the claims
table with its intervals (printed) and ``OUT/analysis/report.html``.
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
    summary = "teacher -> MD student -> frozen features -> fine-tunes -> analysis, on built-in data"
    p = command_parser(subparsers, "demo", summary, __doc__)
    p.add_argument("--out", type=Path, default=Path("runs/demo"), help="demo folder (default runs/demo)")
    p.add_argument("--overwrite", action="store_true", help="retrain stages already in --out")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from maskdistill.report import build_report
    from maskdistill.report.markdown import read_claims_markdown
    from maskdistill.train.demo import run_demo

    setup_logging()
    run_demo(args.out, overwrite=args.overwrite)
    folder = args.out / "analysis"
    report = build_report(folder)
    print("\nDo the paper's claims hold for the demo's models? (95% intervals over the analysed images)\n")
    print(read_claims_markdown(folder))
    print(f"\nreport: {report}")
    return 0


__all__ = ["register", "run"]
