"""``maskdistill analyze``: the paper's measurements (Secs. 3-4: attention, representation,
curvature and decision probes) of any models side by side, written per model and probe as
``OUT/<model>/<probe>.csv/.json/.npz``; then, unless ``--no-report``, the figures and
``OUT/report.html`` (what ``maskdistill report OUT`` rebuilds from those files alone).

SPEC: ``timm:<arch>`` (pretrained from the hub), ``timm:<arch>@<weights file>``, timm's
``hf-hub:<org>/<name>`` and ``local-dir:<folder>`` (``maskdistill export``/``convert``), a maskdistill
run directory or checkpoint; options for timm.create_model after '?', e.g.
``timm:vit_small_patch14_dinov2@vits14.safetensors?img_size=224&num_classes=0`` or
``timm:test_vit?pretrained=false``.
DATA: an image folder (searched recursively; class sub-folders give labels) or ``builtin:val``,
``builtin:cue_conflict``, ``builtin:test?size=64&label=texture``.
PROBE.KEY=VALUE: a parameter of one probe; VALUE is a Python literal (``[12]``, ``0.5``) or a word.
Labels are mapped onto a classifier's head by name (its recorded classes; for timm ImageNet heads,
WordNet-id folders such as n01440764); ``--labels folder-order`` (also ``--param
labels=folder-order``) states that class folder k is output k of a head without names.

Under torchrun (``torchrun --nproc_per_node=N -m maskdistill analyze ...``, also multi-node) every
probe runs data-parallel and rank 0 writes. Started again with the same arguments, an analysis keeps
the probes already finished and redoes the rest. ``--dry-run`` prints the plan (images, passes,
Hessian-vector products, an estimated time from one timed batch) and runs nothing.

example:
  maskdistill analyze --model clip=timm:vit_base_patch16_clip_224.openai@/w/clip.safetensors \\
      --model md=runs/md_clip --pair clip=md --data /data/imagenet/val --probes all \\
      --images 256 --out analysis/clip_vs_md
  maskdistill analyze --model vit=timm:test_vit?pretrained=false --data builtin:val \\
      --probes attention_distance,token_singular_values --param token_singular_values.of=features \\
      --images 16 --out analysis/tiny
"""

from __future__ import annotations

import argparse
import ast
import logging
import os
from pathlib import Path
from typing import Any, Dict, List, Tuple

from maskdistill.cli.common import command_parser, parse_models, parse_pair, setup_logging
from maskdistill.errors import UsageError

PARAM_EXAMPLE = "attention_map.layers=[12]"


def label_mode(option: str, items: List[str]) -> Tuple[str, List[str]]:
    """(the label mode, the other ``--param`` items): ``--param labels=folder-order`` is ``--labels``."""
    given = [parse_pair(i, "--param", PARAM_EXAMPLE)[1] for i in items if i.split("=", 1)[0].strip() == "labels"]
    rest = [i for i in items if i.split("=", 1)[0].strip() != "labels"]
    modes = set(given) | ({option} if option != "by-name" else set())
    if len(modes) > 1:
        raise UsageError(f"--labels / --param labels= disagree ({', '.join(sorted(modes))}); give one.")
    return (modes.pop() if modes else "by-name"), rest


def parse_params(items: List[str]) -> Dict[str, Dict[str, Any]]:
    """Repeated ``--param PROBE.KEY=VALUE`` -> ``{probe: {key: value}}``; VALUE is read as a Python
    literal when it is one, else kept as the word it is."""
    out: Dict[str, Dict[str, Any]] = {}
    for item in items:
        key, value = parse_pair(item, "--param", PARAM_EXAMPLE)
        probe, dot, name = key.partition(".")
        if not dot or not probe or not name:
            raise UsageError(f"--param {item!r}: expected PROBE.KEY=VALUE, e.g. --param {PARAM_EXAMPLE}")
        try:
            parsed: Any = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            parsed = value  # a plain word, e.g. token_singular_values.of=features
        out.setdefault(probe, {})[name] = parsed
    return out


def register(subparsers: argparse._SubParsersAction) -> None:
    a = command_parser(
        subparsers,
        "analyze",
        "attention / representation / curvature / decision probes of any models, figures and report.html",
        __doc__,
    )
    a.add_argument("--model", action="append", required=True, metavar="NAME=SPEC", help="a model to analyse (repeat)")
    a.add_argument("--data", required=True, help="image folder or builtin:val / builtin:cue_conflict")
    a.add_argument("--probes", default="all", help="comma-separated probe names or 'all' (default)")
    a.add_argument("--out", type=Path, required=True, help="output folder (results of other models are kept)")
    a.add_argument("--images", type=int, default=256, help="number of images (default 256)")
    a.add_argument("--batch-size", type=int, default=64)
    a.add_argument(
        "--hessian-images",
        type=int,
        default=None,
        metavar="N",
        help="images of the curvature probes, apart from --images, up to a whole folder "
        "(default: each probe's n_batches x batch_size, 32)",
    )
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
    _add_trust_and_data_options(a)
    a.add_argument("--no-report", action="store_true", help="skip figures and report.html")
    a.add_argument(
        "--dry-run",
        action="store_true",
        help="print per model and probe the images, passes or Hessian-vector products and an estimated "
        "time (one timed batch on this device and process count); run and write nothing",
    )
    a.set_defaults(func=run)


def _add_trust_and_data_options(a: argparse.ArgumentParser) -> None:
    """The intervals, the label mapping, the loaders and the unreadable-image cap."""
    a.add_argument(
        "--bootstrap",
        type=int,
        default=1000,
        metavar="N",
        help="bootstrap replicates of the 95%% intervals over images (default 1000; 0: no intervals)",
    )
    a.add_argument(
        "--labels",
        choices=("by-name", "folder-order"),
        default="by-name",
        help="map data labels onto a head by class name (default), or state folder k = output k",
    )
    a.add_argument("--workers", type=int, default=None, help="data-loading workers (default: 0 on CPU)")
    a.add_argument(
        "--max-unreadable-share",
        type=float,
        default=None,
        help="unreadable images of a folder are skipped (and listed) up to this share of those examined (default 0.05)",
    )


def run(args: argparse.Namespace) -> int:
    from maskdistill.train.signals import interrupt_on_signals

    setup_logging()
    kept = (
        f"The probes finished before are saved in {args.out}; run the same command again to keep them and do the rest."
    )
    with interrupt_on_signals(kept):
        return _analyze(args)


def _shared(args: argparse.Namespace, labels: str, params: Dict[str, Dict[str, Any]]) -> Dict[str, Any]:
    """What the analysis and its plan (``--dry-run``) both take from the command line."""
    return dict(
        models=parse_models(args.model),
        data=args.data,
        probes=args.probes,
        out=args.out,
        images=args.images,
        batch_size=args.batch_size,
        device=args.device,
        seed=args.seed,
        params=params,
        hessian_images=args.hessian_images,
        labels=labels,
        bootstrap=args.bootstrap,
    )


def _analyze(args: argparse.Namespace) -> int:
    from maskdistill.probes.core.runner import run_analyze

    labels, param_items = label_mode(args.labels, args.param)
    shared = _shared(args, labels, parse_params(param_items))
    if args.dry_run:
        return _dry_run(shared)
    paths = run_analyze(
        **shared,
        pairs=[parse_pair(p, "--pair", "clip=md") for p in args.pair],
        workers=args.workers,
        max_unreadable_share=args.max_unreadable_share,
    )
    report = ""
    if not args.no_report and int(os.environ.get("RANK", "0")) == 0:  # under torchrun: rank 0 alone
        from maskdistill.report import build_report  # matplotlib: only when figures are drawn

        paths.append(build_report(args.out))
        report = f"; report: {paths[-1]}"
    logging.getLogger("maskdistill").info("wrote %d files under %s%s", len(paths), args.out, report)
    return 0


def _dry_run(shared: Dict[str, Any]) -> int:
    """Print the plan (rank 0 under torchrun); nothing runs, nothing is written."""
    from maskdistill.models.device import resolve_device
    from maskdistill.parallel.group import init_distributed
    from maskdistill.probes.core.dry_run import plan_analyze
    from maskdistill.probes.core.plan_table import render

    device = resolve_device(shared["device"])
    world = init_distributed(device)
    plan = plan_analyze(**shared, world=world)
    if world.main:
        print(render(plan, world, str(device)))
    return 0


__all__ = ["label_mode", "register", "run", "parse_params"]
