"""``maskdistill tokenizer train CONFIG [key.sub=value ...] --out DIR [--resume | --overwrite]``:
train BEiT v2's VQ-KD tokenizer (paper Sec. 5 / App. B; Table 1 "VQ-KD"), whose run directory is
then the ``decoder.tokenizer`` of masked distillation with code targets (``decoder.kind=tokenizer
objective.loss=ce``). CONFIG is a YAML file or a preset in ``maskdistill/configs/tokenizer/``
(``vqkd_b16_clip``: the paper's setting; ``demo``: built-in data, CPU minutes)."""

from __future__ import annotations

import argparse
import logging


def _train(args: argparse.Namespace) -> int:
    from maskdistill.cli import _setup_logging
    from maskdistill.config import load_config
    from maskdistill.train.vqkd import TokenizerConfig, check_tokenizer_config, train_tokenizer

    cfg = check_tokenizer_config(load_config(args.config, args.overrides, schema=TokenizerConfig, kind="tokenizer"))
    _setup_logging(args.out)
    summary = train_tokenizer(cfg, args.out, resume=args.resume, overwrite=args.overwrite)
    logging.getLogger("maskdistill").info("done: %s", summary)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    from maskdistill.cli import _run_args

    p = subparsers.add_parser(
        "tokenizer",
        help="VQ-KD tokenizer for masked distillation with code targets",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="tokenizer_command", required=True)
    t = sub.add_parser("train", help="train a VQ-KD tokenizer (codebook health logged every epoch)")
    _run_args(t)
    t.set_defaults(func=_train)
