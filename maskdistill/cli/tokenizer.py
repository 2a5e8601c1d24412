"""``maskdistill tokenizer train``: train BEiT v2's VQ-KD tokenizer (paper Sec. 5 and App. B;
Table 1 "VQ-KD"). Its run directory is then the ``decoder.tokenizer`` of masked distillation with
code targets (``decoder.kind=tokenizer objective.loss=ce``). CONFIG is a YAML file or a preset in
``maskdistill/configs/tokenizer/`` (``vqkd_b16_clip``: the paper's setting; ``demo``: built-in
data, CPU minutes), then ``key.sub=value`` overrides; codebook health is logged every epoch.

example:
  maskdistill tokenizer train vqkd_b16_clip data.path=/data/imagenet/train --out runs/vqkd_clip
  maskdistill pretrain vit_b16_clip data.path=/data/imagenet/train decoder.kind=tokenizer \\
      decoder.tokenizer=runs/vqkd_clip objective.loss=ce --out runs/md_clip_tokenizer
"""

from __future__ import annotations

import argparse

from maskdistill.cli.common import add_run_args, command_parser, run_job


def register(subparsers: argparse._SubParsersAction) -> None:
    p = command_parser(subparsers, "tokenizer", "VQ-KD tokenizer for masked distillation with code targets", __doc__)
    sub = p.add_subparsers(dest="tokenizer_command", required=True)
    t = command_parser(sub, "train", "train a VQ-KD tokenizer (codebook health logged every epoch)", __doc__)
    add_run_args(t)
    t.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from maskdistill.train.vqkd import TokenizerConfig, check_tokenizer_config, train_tokenizer

    return run_job(args, train_tokenizer, schema=TokenizerConfig, kind="tokenizer", check=check_tokenizer_config)


__all__ = ["register", "run"]
