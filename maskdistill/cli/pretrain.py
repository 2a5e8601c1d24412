"""``maskdistill pretrain``: masked-distillation pre-training (paper Sec. 2, Eq. 1; Table 1 recipes).
CONFIG is a YAML file or a preset in ``maskdistill/configs/pretrain/`` (``vit_b16_clip``: the paper's
setting; ``demo``: built-in data, CPU minutes), then ``key.sub=value`` overrides. ``--dry-run``
builds student, decoder and optimizer (the teacher's architecture only, no weights) and prints the
plan without writing anything.

example:
  maskdistill pretrain vit_b16_clip data.path=/data/imagenet/train --out runs/md_clip
  maskdistill pretrain vit_b16_clip data.path=/data/imagenet/train --out runs/md_clip --dry-run
  maskdistill pretrain runs/md_clip/config.yaml --out runs/md_clip --resume
  torchrun --nproc_per_node=8 -m maskdistill pretrain vit_b16_clip data.path=... --out runs/md_clip
"""

from __future__ import annotations

import argparse

from maskdistill.cli.common import add_run_args, command_parser, run_job, setup_logging
from maskdistill.config import load_config


def register(subparsers: argparse._SubParsersAction) -> None:
    p = command_parser(subparsers, "pretrain", "masked-distillation pre-training", __doc__)
    add_run_args(p)
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="build student, decoder and optimizer (teacher architecture only, no weights), print the plan",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from maskdistill.train import pretrain as job

    if not args.dry_run:
        return run_job(args, job.pretrain)
    cfg = load_config(args.config, args.overrides)
    setup_logging()  # nothing is written: no log.txt in --out
    print(job.describe_plan(cfg))
    return 0


__all__ = ["register", "run"]
