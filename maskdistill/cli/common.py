"""What several ``maskdistill`` commands share: logging, the CONFIG/overrides/--out arguments of the
training commands and the one job tail they run, the ``LEFT=RIGHT`` options (``--model NAME=SPEC``,
``--pair TEACHER=STUDENT``, ``--param PROBE.KEY=VALUE``) and the sub-parser of a command module."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple

from maskdistill.config import PretrainConfig, load_config
from maskdistill.errors import UsageError

log = logging.getLogger("maskdistill")


def setup_logging(out: Optional[Path] = None) -> None:
    """INFO to stderr on rank 0 (WARNING on the other ranks of a torchrun job, so a message is not
    printed N times); with ``out``, rank 0 also writes ``out/log.txt``."""
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


def command_parser(subparsers: argparse._SubParsersAction, name: str, help_text: str, doc: Optional[str]):
    """The sub-parser of one command: ``help_text`` is its line in ``maskdistill --help``, ``doc`` (the
    command module's docstring, which holds its usage example) its ``--help`` description."""
    return subparsers.add_parser(
        name, help=help_text, description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )


def add_run_args(parser: argparse.ArgumentParser) -> None:
    """CONFIG, ``key.sub=value`` overrides, ``--out`` and ``--resume`` | ``--overwrite``."""
    parser.add_argument("config", help="YAML file or preset name (maskdistill/configs/<command>/)")
    parser.add_argument("overrides", nargs="*", help="key.sub=value overrides")
    parser.add_argument("--out", required=True, type=Path, help="run directory")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--resume", action="store_true", help="continue the run in --out")
    group.add_argument("--overwrite", action="store_true", help="replace the run in --out")


def run_job(
    args: argparse.Namespace,
    job: Callable[..., Any],
    schema: type = PretrainConfig,
    kind: str = "pretrain",
    check: Callable[[Any], Any] = lambda cfg: cfg,
) -> int:
    """The tail of every training command: load and validate the config (before anything is written,
    so a typo costs no run folder), log to ``--out/log.txt``, run ``job(cfg, out, resume=,
    overwrite=)`` and log its summary. ``check``: a further validation of the loaded config."""
    cfg = check(load_config(args.config, args.overrides, schema=schema, kind=kind))
    setup_logging(args.out)
    summary = job(cfg, args.out, resume=args.resume, overwrite=args.overwrite)
    log.info("done: %s", summary)
    return 0


def parse_pair(text: str, option: str, example: str) -> Tuple[str, str]:
    """``LEFT=RIGHT`` -> ``(LEFT, RIGHT)``, both stripped and non-empty. Only the first ``=`` splits,
    so a right side may hold more (``timm:x?img_size=224``). ``option`` and ``example`` go into the
    message of a malformed value."""
    left, eq, right = text.partition("=")
    left, right = left.strip(), right.strip()
    if not eq or not left or not right:
        raise UsageError(f"{option} {text!r}: expected LEFT=RIGHT with both sides given, e.g. {option} {example}")
    return left, right


def parse_models(items: Iterable[str]) -> Dict[str, str]:
    """Repeated ``--model NAME=SPEC`` -> ``{name: spec}`` in the given order; a name given twice is
    refused (its results would overwrite each other)."""
    models: Dict[str, str] = {}
    for item in items:
        name, spec = parse_pair(item, "--model", "deit=timm:deit_small_patch16_224")
        if name in models:
            raise UsageError(f"--model {item!r}: the name {name!r} is given twice; give each model its own name.")
        models[name] = spec
    return models


__all__ = ["setup_logging", "command_parser", "add_run_args", "run_job", "parse_pair", "parse_models"]
