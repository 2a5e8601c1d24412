"""``maskdistill export``: a run's network -- an MD student, a classifier, a fine-tune (its latest
checkpoint, a checkpoint folder, or its ``best/``) -- in timm's Hugging Face hub layout:
``config.json`` (architecture, ``num_classes``, model arguments, ``pretrained_cfg`` with input size,
mean/std, crop, interpolation and ``label_names``), ``model.safetensors`` and a ``README.md`` model
card (teacher, data, recipe, metrics; with ``--analysis``, the claims table of that analysis).
``timm.create_model("local-dir:OUT", pretrained=True)`` rebuilds it with identical outputs; uploaded as
is (``hf upload <org>/<name> OUT .``) it serves ``hf-hub:<org>/<name>``. Every command that takes a
model spec takes ``local-dir:OUT`` and ``hf-hub:<org>/<name>``.

example:
  maskdistill export runs/md_student --out hub/md-vit-b16
  maskdistill export runs/ft_md/best --out hub/md-vit-b16-ft --analysis analysis/clip_vs_md
"""

from __future__ import annotations

import argparse
from pathlib import Path

from maskdistill.cli.common import command_parser, setup_logging


def register(subparsers: argparse._SubParsersAction) -> None:
    p = command_parser(subparsers, "export", "a run's network in timm's hub layout with a model card", __doc__)
    p.add_argument("source", help="a maskdistill run folder, checkpoint folder or a fine-tune's best/ folder")
    p.add_argument("--out", required=True, type=Path, help="the folder to write (hub layout)")
    p.add_argument("--analysis", type=Path, default=None, help="an analysis folder whose claims.csv goes into the card")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty --out folder")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from maskdistill.hub import export_run

    setup_logging()
    print(export_run(args.source, args.out, analysis=args.analysis, overwrite=args.overwrite))
    return 0


__all__ = ["register", "run"]
