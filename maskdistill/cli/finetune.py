"""``maskdistill finetune``: fine-tune an MD run, a maskdistill checkpoint, a timm ViT or an exported
model (``local-dir:<folder>``, ``hf-hub:<org>/<name>``) for image classification (paper Sec. 4; Table 1
recipes). CONFIG is a YAML file or a preset in ``maskdistill/configs/finetune/`` (``vit_b16_paper``:
the paper's CLIP ViT-B/16 recipe, ``vit_b16_beitv2``, ``demo``), then ``key.sub=value`` overrides;
``model.spec`` names the model.

example:
  maskdistill finetune vit_b16_paper model.spec=runs/md_clip data.path=/data/imagenet/train \\
      data.val_path=/data/imagenet/val --out runs/ft_md_clip
  maskdistill finetune runs/ft_md_clip/config.yaml --out runs/ft_md_clip --resume
"""

from __future__ import annotations

import argparse

from maskdistill.cli.common import add_run_args, command_parser, run_job


def register(subparsers: argparse._SubParsersAction) -> None:
    p = command_parser(
        subparsers, "finetune", "fine-tune a checkpoint or timm ViT for classification (Table 1 recipes)", __doc__
    )
    add_run_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from maskdistill.train.finetune import finetune
    from maskdistill.train.finetune_config import FinetuneConfig

    return run_job(args, finetune, schema=FinetuneConfig, kind="finetune")


__all__ = ["register", "run"]
