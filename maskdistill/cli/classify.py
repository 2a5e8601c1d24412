"""``maskdistill classify``: supervised image classification with the pre-training loop (the demo's
teacher is trained with it: the paper's supervised teacher, in miniature). Its run directory works
as a teacher (``teacher.spec=DIR``) or as a model to analyse. CONFIG is a YAML file or a preset in
``maskdistill/configs/classify/``, then ``key.sub=value`` overrides.

example:
  maskdistill classify demo_teacher --out runs/teacher
  maskdistill classify demo_teacher train.epochs=4 --out runs/teacher --overwrite
"""

from __future__ import annotations

import argparse

from maskdistill.cli.common import add_run_args, command_parser, run_job


def register(subparsers: argparse._SubParsersAction) -> None:
    p = command_parser(subparsers, "classify", "supervised classification with the same loop", __doc__)
    add_run_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from maskdistill.train.classify import ClassifyConfig, train_classifier

    return run_job(args, train_classifier, schema=ClassifyConfig, kind="classify")


__all__ = ["register", "run"]
