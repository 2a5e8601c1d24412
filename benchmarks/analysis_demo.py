"""Wall-clock of ``maskdistill analyze --probes all`` on the demo's two fine-tuned models (the
teacher and the masked-distilled student, both fine-tuned on the shape labels), per probe, with
whether every curvature probe converged; and the cost of the intervals: the same analysis with
``--bootstrap 0`` (no intervals) as the baseline measured in the same run. Target (CPU, 2 cores):
both models, all probes, in <= 90 s, every curvature probe converged.

    python benchmarks/analysis_demo.py --demo runs/demo            # models of an earlier `maskdistill demo`
    python benchmarks/analysis_demo.py --demo /tmp/demo --build    # run the demo first (minutes)
    python benchmarks/analysis_demo.py --demo runs/demo --threads 2 --json out.json

Timed: ``run_analyze`` end to end (model loading, the builtin validation images, every probe,
writing the results; not the report). The per-probe seconds are the ``seconds`` the runner writes
into every result's metadata. The machine's load average is printed next to the times: on a shared
machine they are inflated.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import torch

from maskdistill.probes.core.runner import run_analyze
from maskdistill.train.demo_analysis import REPRESENTATION

MODELS = {"ft_teacher": "finetune_teacher", "ft_student": "finetune_student"}
CURVATURE = ("hessian_top_eigs", "hessian_trace", "hessian_density", "loss_landscape_2d")


def demo_models(demo: Path, build: bool) -> Dict[str, str]:
    """name -> run folder of the demo's fine-tuned models (running the demo first with ``build``)."""
    missing = [d for d in MODELS.values() if not (demo / d).is_dir()]
    if missing and build:
        from maskdistill.train.demo import run_demo

        run_demo(demo)
        missing = [d for d in MODELS.values() if not (demo / d).is_dir()]
    if missing:
        raise SystemExit(f"{demo} has no {', '.join(missing)}: run `maskdistill demo --out {demo}` or pass --build.")
    return {name: str(demo / d) for name, d in MODELS.items()}


def analyse(models: Dict[str, str], out: Path, images: int, bootstrap: int, probes: str) -> Dict[str, Any]:
    """One timed analysis -> seconds in all and per model/probe: seconds, converged."""
    t0 = time.perf_counter()
    run_analyze(
        models,
        "builtin:val",
        probes=probes,
        out=out,
        images=images,
        device="cpu",
        pairs=[("ft_teacher", "ft_student")],
        progress=False,
        bootstrap=bootstrap,
    )
    seconds = time.perf_counter() - t0
    per: Dict[str, Dict[str, Any]] = {}
    for name in models:
        for f in sorted((out / name).glob("*.json")):
            meta = json.loads(f.read_text())
            per.setdefault(f.stem, {})[name] = {"seconds": meta.get("seconds"), "converged": meta.get("converged")}
    return {"seconds": seconds, "probes": per}


def _print(run: Dict[str, Any], base: Optional[Dict[str, Any]]) -> None:
    names = list(MODELS)
    print(f"{'probe':28s} " + " ".join(f"{n + ' s':>12s} {'conv':>5s}" for n in names))
    for probe, by in sorted(run["probes"].items(), key=lambda kv: -sum(v["seconds"] or 0 for v in kv[1].values())):
        cells = []
        for n in names:
            v = by.get(n, {})
            conv = "" if v.get("converged") is None else ("yes" if v["converged"] else "NO")
            sec = v.get("seconds")
            cells.append(f"{float('nan') if sec is None else sec:12.2f} {conv:>5s}")
        print(f"{probe:28s} " + " ".join(cells))
    print(f"{'total (both models)':28s} {run['seconds']:12.2f}")
    if base is not None:
        ratio = run["seconds"] / base["seconds"]
        print(f"{'--bootstrap 0 (baseline)':28s} {base['seconds']:12.2f}   default / baseline = {ratio:.2f}x")
        with_ci, without = representation_seconds(run), representation_seconds(base)
        print(
            f"{'attention/representation':28s} {with_ci:12.2f}   --bootstrap 0: {without:.2f} s, "
            f"intervals add {with_ci / without - 1:+.0%} (target <= +20%)"
        )


def representation_seconds(run: Dict[str, Any]) -> float:
    """The shared attention/representation pass and its probes (with their intervals), both models."""
    return sum(v["seconds"] or 0.0 for p in REPRESENTATION for v in run["probes"].get(p, {}).values())


def main(argv: Optional[List[str]] = None) -> Dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--demo", type=Path, default=Path("runs/demo"), help="folder of `maskdistill demo` (runs/demo)")
    p.add_argument("--build", action="store_true", help="run the demo into --demo first if its models are missing")
    p.add_argument("--images", type=int, default=256, help="analysed images (analyze's default 256)")
    p.add_argument("--probes", default="all")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads (the target: 2 cores)")
    p.add_argument("--no-baseline", action="store_true", help="skip the --bootstrap 0 run")
    p.add_argument("--json", default=None, help="write the measurements here")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    models = demo_models(args.demo, args.build)
    load = os.getloadavg()
    print(
        f"{platform.processor() or platform.machine()}, torch {torch.__version__}, {args.threads} threads, "
        f"load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f} ({os.cpu_count()} CPUs)"
    )
    with tempfile.TemporaryDirectory() as tmp:
        base = None
        if not args.no_baseline:
            base = analyse(models, Path(tmp) / "no_intervals", args.images, 0, args.probes)
        run = analyse(models, Path(tmp) / "default", args.images, 1000, args.probes)
    after = os.getloadavg()
    _print(run, base)
    curv = [v.get("converged") for pr in CURVATURE for v in run["probes"].get(pr, {}).values()]
    converged = [c for c in curv if c is not None]
    print(
        f"curvature probes converged: {sum(bool(c) for c in converged)}/{len(converged)}; "
        f"load average after {after[0]:.1f} {after[1]:.1f} {after[2]:.1f}"
    )
    out = {
        "run": run,
        "baseline": base,
        "threads": args.threads,
        "load_before": load,
        "load_after": after,
        "images": args.images,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    main()
