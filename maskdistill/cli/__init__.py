"""``maskdistill <command>``: thin wrappers that build objects from config and call the library.

  maskdistill demo [--out runs/demo] [--overwrite]
  maskdistill pretrain CONFIG [key.sub=value ...] --out DIR [--resume | --overwrite] [--dry-run]
  maskdistill classify CONFIG [key.sub=value ...] --out DIR [--resume | --overwrite]

CONFIG is a YAML file or a preset name (``maskdistill/configs/<command>/``). Multi-GPU:
``torchrun --nproc_per_node=8 -m maskdistill.cli pretrain ...`` (see the README for SLURM).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import List, Optional

from maskdistill.config import ConfigError, load_config


def _setup_logging(out: Optional[Path] = None) -> None:
    import os

    rank = int(os.environ.get("RANK", "0"))
    handlers: List[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if out is not None and rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(out / "log.txt"))
    logging.basicConfig(
        level=logging.INFO if rank == 0 else logging.WARNING,
        handlers=handlers,
        force=True,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )


def _run_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", help="YAML file or preset name")
    p.add_argument("overrides", nargs="*", help="key.sub=value overrides")
    p.add_argument("--out", required=True, type=Path, help="run directory")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--resume", action="store_true", help="continue the run in --out")
    g.add_argument("--overwrite", action="store_true", help="replace the run in --out")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="maskdistill", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    d = sub.add_parser("demo", help="teacher -> MD student -> frozen-feature table, on built-in data")
    d.add_argument("--out", type=Path, default=Path("runs/demo"))
    d.add_argument("--overwrite", action="store_true", help="retrain stages already in --out")
    p = sub.add_parser("pretrain", help="masked-distillation pre-training")
    _run_args(p)
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="build student, decoder and optimizer (teacher architecture only, no weights), print the plan",
    )
    c = sub.add_parser("classify", help="supervised classification with the same loop")
    _run_args(c)
    for module in _command_modules():
        module.register(sub)  # adds its sub-parsers with set_defaults(func=...)
    return parser


# Commands that live next to the library they drive: each module has ``register(subparsers)``, whose
# parsers set ``func(args) -> int``. Keeps this file thin as the toolkit grows.
COMMAND_MODULES = ("finetune", "analyze", "decisions", "tokenizer")


def _command_modules() -> list:
    import importlib

    found = []
    for name in COMMAND_MODULES:
        try:
            found.append(importlib.import_module(f"maskdistill.cli.{name}"))
        except ModuleNotFoundError as e:  # a command not present in this version
            if e.name != f"maskdistill.cli.{name}":
                raise
    return found


def dry_run(cfg) -> str:
    from maskdistill.data.sources import base_dataset
    from maskdistill.train.loop import plan_steps
    from maskdistill.train.optim import build_optimizer
    from maskdistill.train.pretrain import build_distiller

    distiller = build_distiller(cfg, pretrained_teacher=False)
    n_student = sum(p.numel() for p in distiller.student.parameters())
    n_decoder = sum(p.numel() for p in distiller.decoder.parameters())
    opt = build_optimizer(distiller, cfg.optim)
    lines = [
        f"student {cfg.student.arch}: {n_student:,} parameters (incl. mask token); decoder "
        f"{cfg.decoder.kind}: {n_decoder:,}; teacher {cfg.teacher.spec}: {distiller.teacher.dim}-d targets",
        f"optimizer AdamW betas={tuple(cfg.optim.betas)} lr={cfg.optim.lr} wd={cfg.optim.weight_decay} "
        f"({sum(p.numel() for p in opt.param_groups[0]['params']):,} decayed / "
        f"{sum(p.numel() for p in opt.param_groups[1]['params']):,} not decayed)",
    ]
    try:
        n = len(base_dataset(cfg.data.path, cfg.data))
        spe, total, warmup, stop = plan_steps(n, cfg.train, cfg.optim)
        lines.append(f"data: {n:,} images, {spe} steps/epoch, {total} steps ({warmup} warm-up)")
    except (FileNotFoundError, ValueError) as e:
        lines.append(f"data: {e}")
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if getattr(args, "func", None) is not None:
            return int(args.func(args) or 0)
        if args.command == "demo":
            _setup_logging()
            from maskdistill.train.demo import run_demo

            run_demo(args.out, overwrite=args.overwrite)
            return 0
        if args.command == "pretrain":
            cfg = load_config(args.config, args.overrides)
            if args.dry_run:
                _setup_logging()
                print(dry_run(cfg))
                return 0
            _setup_logging(args.out)
            from maskdistill.train.pretrain import pretrain

            summary = pretrain(cfg, args.out, resume=args.resume, overwrite=args.overwrite)
        else:
            from maskdistill.train.classify import ClassifyConfig, train_classifier

            cfg = load_config(args.config, args.overrides, schema=ClassifyConfig, kind="classify")
            _setup_logging(args.out)
            summary = train_classifier(cfg, args.out, resume=args.resume, overwrite=args.overwrite)
        logging.getLogger("maskdistill").info("done: %s", summary)
        return 0
    except (ConfigError, FileNotFoundError, FileExistsError, ValueError, RuntimeError, KeyError) as e:
        print(f"maskdistill: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
