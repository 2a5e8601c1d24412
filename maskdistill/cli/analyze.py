"""``maskdistill analyze`` and ``maskdistill report`` (issue 4; paper Secs. 3-4 side by side).

    maskdistill analyze --model NAME=SPEC [--model NAME=SPEC ...] --data DATA --probes P1,P2|all \\
        --out DIR [--images N] [--batch-size B] [--device cpu|cuda|auto] [--seed S] \\
        [--pair TEACHER=STUDENT ...] [--param PROBE.KEY=VALUE ...] [--no-report]
    maskdistill report DIR [--pair TEACHER=STUDENT ...] [--sharpness NAME=FINETUNE_RUN ...]

SPEC: timm:<arch> (pretrained from the hub), timm:<arch>@<weights file>, a maskdistill run directory
or checkpoint; options for timm.create_model after '?', e.g.
timm:vit_small_patch14_dinov2@vits14.safetensors?img_size=224&num_classes=0 or timm:test_vit?pretrained=false.
DATA: an image folder (searched recursively; class sub-folders give labels) or builtin:val,
builtin:cue_conflict, builtin:test?size=64&label=texture.
"""

from __future__ import annotations

import argparse
import ast
import logging
from pathlib import Path
from typing import Any, Dict, List, Tuple


def _pair(text: str, what: str) -> Tuple[str, str]:
    left, eq, right = text.partition("=")
    if not eq or not left or not right:
        example = "deit=timm:deit_small_patch16_224" if what == "--model" else "teacher=student"
        raise ValueError(f"{what} {text!r}: expected LEFT=RIGHT (e.g. {example}).")
    return left.strip(), right.strip()


def _params(items: List[str]) -> Dict[str, Dict[str, Any]]:
    out: Dict[str, Dict[str, Any]] = {}
    for item in items:
        key, value = _pair(item, "--param")
        probe, dot, name = key.partition(".")
        if not dot or not name:
            raise ValueError(f"--param {item!r}: expected PROBE.KEY=VALUE (e.g. attention_map.layers=[12]).")
        try:
            parsed: Any = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            parsed = value  # a plain word, e.g. token_singular_values.of=features
        out.setdefault(probe, {})[name] = parsed
    return out


def _analyze(args: argparse.Namespace) -> int:
    from maskdistill.cli import _setup_logging
    from maskdistill.probes.core.runner import run_analyze

    _setup_logging()
    models: Dict[str, str] = {}
    for m in args.model:
        name, spec = _pair(m, "--model")
        if name in models:
            raise ValueError(f"--model {name}=...: the name {name!r} is given twice.")
        models[name] = spec
    paths = run_analyze(
        models,
        args.data,
        args.probes,
        args.out,
        images=args.images,
        batch_size=args.batch_size,
        device=args.device,
        seed=args.seed,
        pairs=[_pair(p, "--pair") for p in args.pair],
        params=_params(args.param),
        workers=args.workers,
    )
    if not args.no_report:
        from maskdistill.report import build_report  # matplotlib: only when figures are drawn

        paths.append(build_report(args.out))
    logging.getLogger("maskdistill").info(
        "wrote %d files under %s%s", len(paths), args.out, f"; report: {paths[-1]}" if not args.no_report else ""
    )
    return 0


def _report(args: argparse.Namespace) -> int:
    from maskdistill.cli import _setup_logging
    from maskdistill.report import build_report

    _setup_logging()
    runs = dict(_pair(s, "--sharpness") for s in args.sharpness)
    path = build_report(args.dir, pairs=[_pair(p, "--pair") for p in args.pair], sharpness=runs)
    print(path)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    a = subparsers.add_parser(
        "analyze",
        help="attention / representation / curvature probes of any models, figures and report.html",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    a.add_argument("--model", action="append", required=True, metavar="NAME=SPEC", help="a model to analyse (repeat)")
    a.add_argument("--data", required=True, help="image folder or builtin:val / builtin:cue_conflict")
    a.add_argument("--probes", default="all", help="comma-separated probe names or 'all' (default)")
    a.add_argument("--out", type=Path, required=True, help="output folder (results of other models are kept)")
    a.add_argument("--images", type=int, default=256, help="number of images (default 256)")
    a.add_argument("--batch-size", type=int, default=64)
    a.add_argument("--device", default="auto", help="cpu | cuda | cuda:N | auto (default)")
    a.add_argument("--seed", type=int, default=0, help="picks the image subset of a folder")
    a.add_argument(
        "--pair",
        action="append",
        default=[],
        metavar="TEACHER=STUDENT",
        help="state whether the paper's claims hold for this teacher and MD student (repeat)",
    )
    a.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="PROBE.KEY=VALUE",
        help="a probe parameter, e.g. token_singular_values.of=features (repeat)",
    )
    a.add_argument("--workers", type=int, default=None, help="data-loading workers (default: 0 on CPU)")
    a.add_argument("--no-report", action="store_true", help="skip figures and report.html")
    a.set_defaults(func=_analyze)
    r = subparsers.add_parser("report", help="figures and report.html from saved analysis results (no model needed)")
    r.add_argument("dir", type=Path, help="the --out folder of maskdistill analyze")
    r.add_argument("--pair", action="append", default=[], metavar="TEACHER=STUDENT", help="extra teacher/student pair")
    r.add_argument(
        "--sharpness",
        action="append",
        default=[],
        metavar="NAME=RUN",
        help="add a fine-tuning run's sharpness log (eval.sharpness_every > 0) to Fig. 7c/f; kept in DIR",
    )
    r.set_defaults(func=_report)
