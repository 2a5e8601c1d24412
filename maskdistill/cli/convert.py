"""``maskdistill convert``: an official masked-distillation release as a timm model in the layout of
``maskdistill export`` (so it can be a teacher, a fine-tuning start or an analysed model:
``local-dir:OUT``). ``--format`` names the release's key layout: ``beitv2`` (unilm BEiT v2 -> timm
BEiT), ``fd`` (Feature Distillation -> BEiT), ``milan`` and ``dbot`` (MAE code bases -> timm ViT),
``eva`` (EVA-02 -> timm EVA). Widths, depth, patch size, pooling, position embeddings and layer scale
follow from the tensors; ``--arch`` and ``--kwarg`` set what they cannot (e.g. ``num_heads`` when the
head width is not 64). Pre-training parts (decoders, ``lm_head``, mask tokens) are dropped and
listed; any other key that does not fit stops the conversion with the list of keys
(``--allow-unmapped`` drops extra checkpoint keys instead, listing them in the card).

example:
  maskdistill convert --format beitv2 beitv2_base_patch16_224_pt1k.pth --out hub/beitv2-b16
  maskdistill convert --format milan milan_vitb.pth --out hub/milan-b16 --kwarg num_heads=12
"""

from __future__ import annotations

import argparse
from pathlib import Path

from maskdistill.cli.common import command_parser, setup_logging

FORMATS = ("beitv2", "fd", "milan", "dbot", "eva")  # the keys of maskdistill.hub.FORMATS


def register(subparsers: argparse._SubParsersAction) -> None:
    p = command_parser(
        subparsers, "convert", "an official BEiT v2 / FD / MILAN / dBOT / EVA checkpoint to timm", __doc__
    )
    p.add_argument("checkpoint", type=Path, help="the released weights (.pth, .pt, .bin or .safetensors)")
    p.add_argument("--format", required=True, choices=FORMATS, help="the release's key layout")
    p.add_argument("--out", required=True, type=Path, help="the folder to write (hub layout)")
    p.add_argument("--arch", default=None, help="the timm architecture (default: the format's base model)")
    p.add_argument("--kwarg", action="append", default=[], metavar="KEY=VALUE", help="a timm.create_model argument")
    p.add_argument("--allow-unmapped", action="store_true", help="drop checkpoint keys that do not map (listed)")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty --out folder")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from maskdistill.hub import convert_checkpoint
    from maskdistill.models.spec import parse_options

    setup_logging()
    kwargs = parse_options("--kwarg", "&".join(args.kwarg))
    conv = convert_checkpoint(
        args.format, args.checkpoint, args.out, args.arch, kwargs, args.allow_unmapped, args.overwrite
    )
    for line in conv.notes():
        print(line)
    print(conv.out)
    return 0


__all__ = ["register", "run"]
