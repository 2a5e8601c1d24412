"""``maskdistill finetune`` and ``maskdistill sweep lr|freeze`` (paper Sec. 4, Fig. 8b/8c).

maskdistill finetune CONFIG [key.sub=value ...] --out DIR [--resume | --overwrite]
maskdistill sweep lr CONFIG --model NAME=SPEC [...] --values 1e-5,5e-5,2e-4 --out DIR [overrides]
maskdistill sweep freeze CONFIG --model NAME=SPEC [...] [--values 0,4,8,12] --out DIR [overrides]
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Dict, List

from maskdistill.config import load_config


def _models(items: List[str]) -> Dict[str, str]:
    out: Dict[str, str] = {}
    for item in items:
        name, sep, spec = item.partition("=")
        if not sep or not name or not spec:
            raise ValueError(f"--model {item!r} must look like NAME=SPEC (e.g. md=runs/md_student).")
        if name in out:
            raise ValueError(f"--model name {name!r} is given twice.")
        out[name] = spec
    return out


def _finetune(args: argparse.Namespace) -> int:
    from maskdistill.cli import _setup_logging
    from maskdistill.train.finetune import finetune
    from maskdistill.train.finetune_config import FinetuneConfig

    cfg = load_config(args.config, args.overrides, schema=FinetuneConfig, kind="finetune")
    _setup_logging(args.out)
    summary = finetune(cfg, args.out, resume=args.resume, overwrite=args.overwrite)
    logging.getLogger("maskdistill").info("done: %s", summary)
    return 0


def _sweep(args: argparse.Namespace) -> int:
    from maskdistill.cli import _setup_logging
    from maskdistill.train.sweep import run_sweep

    _setup_logging(args.out)
    values = [v.strip() for v in args.values.split(",") if v.strip()] if args.values else None
    table = run_sweep(args.kind, args.config, _models(args.model), args.out, values, args.overrides)
    from maskdistill.report.plots.sweeps import plot_sweep

    plot_sweep(table, args.kind, args.out / f"sweep_{args.kind}")
    print(table.to_string(index=False))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    from maskdistill.cli import _run_args

    f = sub.add_parser("finetune", help="fine-tune a checkpoint or timm ViT for classification (Table 1 recipes)")
    _run_args(f)  # CONFIG (configs/finetune/ preset or YAML), overrides such as model.spec=runs/md, --out, ...
    f.set_defaults(func=_finetune)

    s = sub.add_parser(
        "sweep", help="fine-tuning sweeps: accuracy vs learning rate (Fig. 8b) or frozen blocks (Fig. 8c)"
    )
    s.add_argument("kind", choices=("lr", "freeze"))
    s.add_argument("config", help="fine-tuning YAML file or preset name")
    s.add_argument("overrides", nargs="*", help="key.sub=value overrides for every run")
    s.add_argument("--model", action="append", required=True, help="NAME=SPEC (repeat for several models)")
    s.add_argument(
        "--values",
        default="",
        help="comma-separated peak lrs, or numbers of frozen blocks "
        "(default for freeze: 0..depth, then the linear probe)",
    )
    s.add_argument("--out", required=True, type=Path, help="sweep folder (resumable: finished runs are kept)")
    s.set_defaults(func=_sweep)
