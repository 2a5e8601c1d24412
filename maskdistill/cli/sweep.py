"""``maskdistill sweep lr|freeze``: fine-tuning sweeps (paper Sec. 4): top-1 against the peak
learning rate (Fig. 8b) or against the number of frozen blocks, ending with the linear probe
(Fig. 8c). Every (model, value) pair is an ordinary fine-tuning run in ``OUT/<model>/<setting>/``;
the table ``OUT/sweep_<kind>.csv`` and its figure are written at the end. Running the same command
again skips finished runs and resumes unfinished ones; more models or values extend the sweep.

example:
  maskdistill sweep lr vit_b16_paper data.path=... data.val_path=... \\
      --model md=runs/md_clip --model clip=timm:vit_base_patch16_clip_224.openai \\
      --values 1e-5,5e-5,2e-4 --out sweeps/lr
  maskdistill sweep freeze vit_b16_paper data.path=... --model md=runs/md_clip --out sweeps/freeze
"""

from __future__ import annotations

import argparse
from pathlib import Path

from maskdistill.cli.common import command_parser, parse_models, setup_logging


def register(subparsers: argparse._SubParsersAction) -> None:
    help_text = "fine-tuning sweeps: accuracy vs learning rate (Fig. 8b) or frozen blocks (Fig. 8c)"
    p = command_parser(subparsers, "sweep", help_text, __doc__)
    p.add_argument("kind", choices=("lr", "freeze"), help="lr: peak learning rates; freeze: frozen blocks")
    p.add_argument("config", help="fine-tuning YAML file or preset name")
    p.add_argument("overrides", nargs="*", help="key.sub=value overrides for every run")
    p.add_argument("--model", action="append", required=True, metavar="NAME=SPEC", help="a model to sweep (repeat)")
    p.add_argument(
        "--values",
        default="",
        help="comma-separated peak lrs, or numbers of frozen blocks "
        "(default for freeze: 0..depth, then the linear probe)",
    )
    p.add_argument("--out", required=True, type=Path, help="sweep folder (resumable: finished runs are kept)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from maskdistill.train.sweep import run_sweep

    models = parse_models(args.model)
    setup_logging(args.out)
    values = [v.strip() for v in args.values.split(",") if v.strip()] if args.values else None
    table = run_sweep(args.kind, args.config, models, args.out, values, args.overrides)
    from maskdistill.report.plots.sweeps import plot_sweep  # matplotlib: only once the runs are done

    plot_sweep(table, args.kind, args.out / f"sweep_{args.kind}")
    print(table.to_string(index=False))
    return 0


__all__ = ["register", "run"]
