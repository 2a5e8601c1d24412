"""``maskdistill <command>`` (also ``python -m maskdistill <command>``): thin wrappers that read the
command line, build the config and call the library. ``maskdistill <command> --help`` shows each
command's usage with examples. CONFIG is a YAML file or a preset name
(``maskdistill/configs/<command>/``), followed by ``key.sub=value`` overrides. Many GPUs:
``torchrun --nproc_per_node=8 -m maskdistill pretrain ...``.

exit codes:
  0  the command finished.
  2  a usage or config mistake: the command line (argparse), a maskdistill UsageError (a ConfigError
     is one), FileNotFoundError, FileExistsError, or a ValueError / KeyError raised by maskdistill's
     own code about its input. One "maskdistill: error: <message>" on stderr, no traceback; the
     message names the problem and the fix.
  1  a run that stopped on purpose (maskdistill RunStopped: a NaN/inf loss, too many corrupt
     images): "maskdistill: stopped: <message>"; the checkpoints saved before are kept.
  1  a full disk or a quota (one line naming the file, what is kept and the fix; a permission
     denied or a read-only folder exits 2).
  75 a training run stopped by SIGTERM, SIGINT (Ctrl-C) or SIGUSR1 after finishing its step and
     writing a checkpoint at it: "maskdistill: interrupted: ..."; --resume continues it exactly.
     A command that cannot resume (analyze) exits 128 + the signal number; a second Ctrl-C, or
     one before training started, exits 130.
  1  anything else (a bug, CUDA out of memory, a ValueError raised inside torch or timm): the
     exception propagates with its traceback, which is what helps to find it.
"""

from __future__ import annotations

import argparse
import sys
from typing import List, Optional

from maskdistill.cli import (
    analyze,
    classify,
    convert,
    decisions,
    demo,
    export,
    finetune,
    pretrain,
    report,
    sweep,
    tokenizer,
)
from maskdistill.cli.failures import classify_failure
from maskdistill.errors import Interrupted

# Every command, in the order of ``maskdistill --help``. Each module has ``register(subparsers)``
# (its parser, with ``set_defaults(func=run)``) and ``run(args) -> int``; a module imports its
# library inside ``run``, so ``--help`` and one command do not load torch, timm or matplotlib for all.
COMMANDS = (demo, pretrain, classify, finetune, sweep, tokenizer, analyze, report, decisions, export, convert)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="maskdistill", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.register(subparsers)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    """Run one command; returns its exit code (see the module docstring for what each one means)."""
    args = build_parser().parse_args(argv)  # a command-line mistake: argparse exits 2 itself
    try:
        return int(args.func(args) or 0)
    except (Exception, KeyboardInterrupt, Interrupted) as exc:
        failure = classify_failure(exc)
        if failure is None:
            raise
        code, line = failure
        print(line, file=sys.stderr)
        return code


__all__ = ["COMMANDS", "build_parser", "main"]
