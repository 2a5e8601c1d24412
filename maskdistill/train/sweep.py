"""Fine-tuning sweeps (paper Sec. 4): accuracy against the peak learning rate (Fig. 8b: MD makes a
model less sensitive to it) and against the number of frozen blocks, with the linear probe as the
last point (Fig. 8c: fine-tuning only the top blocks nearly reaches full accuracy).

A sweep is a folder of ordinary fine-tuning runs, ``<out>/<model>/<setting>/``, plus
``sweep.json`` (the shared configuration) and the results ``sweep_<kind>.csv`` and figure. Running
the same command again skips finished runs and resumes unfinished ones; adding models or values
extends the sweep; a different shared configuration is refused, naming the differing keys.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import pandas as pd

from maskdistill.config import diff, load_config, to_dict
from maskdistill.runs.checkpoint import run_finished
from maskdistill.runs.folder import has_checkpoint
from maskdistill.runs.metrics import read_metrics
from maskdistill.train.finetune import finetune
from maskdistill.train.finetune_config import FinetuneConfig

log = logging.getLogger(__name__)

LINEAR_PROBE = "linear"
# Keys that differ between the runs of one sweep (and may differ from run to run of the folder).
_PER_RUN = (
    "model.spec",
    "optim.lr",
    "optim.min_lr",
    "optim.freeze_blocks",
    "optim.linear_probe",
    "train.max_steps",
    "train.device",
    "train.compile",
    "train.log_every",
    "data.num_workers",
)


def _setting(kind: str, value: str) -> str:
    return (
        f"lr_{float(value):g}" if kind == "lr" else (LINEAR_PROBE if value == LINEAR_PROBE else f"frozen_{int(value)}")
    )


def _run_overrides(kind: str, value: str, base: FinetuneConfig) -> List[str]:
    if kind == "lr":
        lr = float(value)
        # Keep the recipe's ratio of floor to peak (Table 1: 5e-5 -> 1e-7).
        return [f"optim.lr={lr}", f"optim.min_lr={lr * base.optim.min_lr / base.optim.lr}"]
    if value == LINEAR_PROBE:
        return ["optim.linear_probe=true", "optim.freeze_blocks=0"]
    return [f"optim.freeze_blocks={int(value)}"]


def _default_values(kind: str, models: Dict[str, str], base: FinetuneConfig) -> List[str]:
    if kind == "lr":
        raise ValueError("sweep lr needs --values (peak learning rates, e.g. 1e-5,5e-5,2e-4,1e-3).")
    from maskdistill.models.classifier import build_classifier_model

    m = base.model
    depth = len(
        build_classifier_model(next(iter(models.values())), 1, base.data.img_size, arch=m.arch, **m.kwargs)[0].blocks
    )
    return [str(k) for k in range(depth + 1)] + [LINEAR_PROBE]


def _check_folder(out: Path, kind: str, shared: Dict, models: Dict[str, str]) -> None:
    """Refuse a folder whose runs were made with another shared configuration or other specs."""
    path = out / "sweep.json"
    if not path.exists():
        return
    old = json.loads(path.read_text())
    problems = []
    if old["kind"] != kind:
        problems.append(f"kind: {old['kind']!r} -> {kind!r}")
    problems += diff(old["config"], shared)
    problems += [
        f"model {n}: {old['models'][n]!r} -> {s!r}"
        for n, s in models.items()
        if n in old["models"] and old["models"][n] != s
    ]
    if problems:
        raise ValueError(
            f"{out} holds a sweep with another configuration:\n  "
            + "\n  ".join(problems)
            + "\nUse another --out folder, or the same configuration to extend this sweep."
        )


def _strip(d: Dict, keys: Sequence[str]) -> Dict:
    d = json.loads(json.dumps(d))
    for key in keys:
        section, name = key.split(".")
        d.get(section, {}).pop(name, None)
    return d


def run_sweep(
    kind: str,
    config: str | Path,
    models: Dict[str, str],
    out: str | Path,
    values: Optional[Sequence[str]] = None,
    overrides: Sequence[str] = (),
) -> pd.DataFrame:
    """Run (or finish) every (model, value) fine-tune; returns and writes the tidy results table
    (``sweep_<kind>.csv``; ``maskdistill sweep`` draws it with :func:`maskdistill.report.plots.sweeps.plot_sweep`)."""
    if kind not in ("lr", "freeze"):
        raise ValueError(f"sweep kind {kind!r} is not one of lr, freeze.")
    out = Path(out)
    first = next(iter(models.values()))
    base = load_config(config, [*overrides, f"model.spec={first}"], schema=FinetuneConfig, kind="finetune")
    values = list(values) if values else _default_values(kind, models, base)
    shared = _strip(to_dict(base), _PER_RUN)
    _check_folder(out, kind, shared, models)
    out.mkdir(parents=True, exist_ok=True)
    old_models = json.loads((out / "sweep.json").read_text())["models"] if (out / "sweep.json").exists() else {}
    (out / "sweep.json").write_text(
        json.dumps({"kind": kind, "config": shared, "models": {**old_models, **models}}, indent=1)
    )
    rows = []
    for name, spec in models.items():
        for value in values:
            run_dir = out / name / _setting(kind, value)
            cfg = load_config(
                config,
                [*overrides, f"model.spec={spec}", *_run_overrides(kind, value, base)],
                schema=FinetuneConfig,
                kind="finetune",
            )
            if not run_finished(run_dir):
                resume = has_checkpoint(run_dir)
                log.info("sweep %s: %s %s (%s)", kind, name, _setting(kind, value), "resuming" if resume else "new")
                finetune(cfg, run_dir, resume=resume, overwrite=not resume)
            rows.append(_result(run_dir, name, kind, value))
    table = pd.DataFrame(rows)
    table.to_csv(out / f"sweep_{kind}.csv", index=False)
    return table


def _result(run_dir: Path, model: str, kind: str, value: str) -> Dict:
    evals = read_metrics(run_dir / "metrics_eval.csv")
    if not evals:
        raise ValueError(f"{run_dir} has no evaluation (metrics_eval.csv); sweeps need data.val_path.")
    last = evals[-1]
    return {
        "model": model,
        "setting": kind,
        "value": value if value == LINEAR_PROBE else float(value),
        "top1": last["top1"],
        "top5": last["top5"],
        "best_top1": max(r["top1"] for r in evals),
        "epochs": last["epoch"],
        "run": str(run_dir),
    }


__all__ = ["run_sweep", "LINEAR_PROBE"]
