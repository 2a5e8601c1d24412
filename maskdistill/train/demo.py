"""``maskdistill demo``: the whole path on the built-in data, in CPU minutes.

1. train a small supervised ViT teacher on the texture labels (the paper's supervised teacher, in
   miniature);
2. masked-distil a BEiT-style student from it (shared relative position bias, layer scale, blockwise
   masks, fc decoder, LayerNorm whitening, smooth-L1: the paper's setting, scaled down);
3. evaluate frozen features of the student, of the same architecture at random initialisation and
   of the teacher on held-out images (k-NN and linear probe, texture and shape labels), print a
   table and write it to
   ``<out>/results.md`` and ``results.json``;
4. fine-tune the teacher and the MD student on the *shape* labels (``configs/finetune/demo.yaml``:
   the paper's Sec. 4 recipe scaled down) and add their held-out top-1 to the table. Shape is the
   transfer task: neither model saw shape labels, and the teacher was trained to ignore shape;
5. analyse them as the paper does (``train/demo_analysis.py``): teacher vs MD student (attention,
   spectra, Fourier) and the two fine-tunes (Hessian, landscape, shape bias), into
   ``<out>/analysis/`` with the claims' intervals and verdicts.

Stages already finished in ``<out>`` (same config) are reused, so running the demo twice is cheap.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Dict, List, Optional

import timm
import torch

from maskdistill.config import load_config
from maskdistill.data.synthetic import ShapesTextures
from maskdistill.data.transforms import eval_transform
from maskdistill.eval.frozen import extract_features, knn_accuracy, linear_probe_accuracy
from maskdistill.models.backbone import load_backbone
from maskdistill.runs.checkpoint import run_finished
from maskdistill.runs.folder import has_checkpoint
from maskdistill.runs.metrics import read_metrics
from maskdistill.train.classify import ClassifyConfig, train_classifier
from maskdistill.train.demo_analysis import run_demo_analysis
from maskdistill.train.finetune import finetune
from maskdistill.train.finetune_config import FinetuneConfig
from maskdistill.train.pretrain import pretrain

log = logging.getLogger(__name__)


def _stage(name: str, run_dir: Path, train_fn, overwrite: bool) -> None:
    if run_dir.exists() and not overwrite:
        if run_finished(run_dir):
            log.info("demo: %s already trained in %s (pass --overwrite to redo)", name, run_dir)
            # Still refuse silently reusing a run trained with another config.
            train_fn(resume=True, overwrite=False)
            return
        if has_checkpoint(run_dir):
            log.info("demo: resuming %s in %s", name, run_dir)
            train_fn(resume=True, overwrite=False)
            return
    t = time.perf_counter()
    # A folder with a config but no checkpoint holds nothing worth keeping (a run stopped early): a
    # plain start replaces it.
    train_fn(resume=False, overwrite=overwrite)
    log.info("demo: %s trained in %.0f s", name, time.perf_counter() - t)


def run_demo(
    out: str | Path = "runs/demo",
    overwrite: bool = False,
    overrides: Optional[List[str]] = None,
    eval_images: int = 1000,
    analysis: bool = True,
) -> Dict[str, Dict[str, float]]:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tcfg = load_config("demo_teacher", schema=ClassifyConfig, kind="classify")
    _stage("teacher", out / "teacher", lambda **kw: train_classifier(tcfg, out / "teacher", **kw), overwrite)

    scfg = load_config("demo", [f"teacher.spec={out / 'teacher'}", *(overrides or [])])
    _stage("student", out / "student", lambda **kw: pretrain(scfg, out / "student", **kw), overwrite)

    # Frozen-feature evaluation on held-out images (split "val" never overlaps "train"), for both
    # labels of the built-in data: the texture the teacher was trained on, and shape.
    d = scfg.data
    tf = eval_transform(d.img_size)
    student, info = load_backbone(out / "student")
    teacher, tinfo = load_backbone(out / "teacher")
    torch.manual_seed(scfg.train.seed + 1)
    random_init = timm.create_model(info["arch"], pretrained=False, **info["kwargs"])
    models = {
        "MD student": (student, info),
        "random init (same arch)": (random_init, info),
        "teacher (supervised)": (teacher, tinfo),
    }
    results: Dict[str, Dict[str, float]] = {name: {} for name in models}
    train_set = ShapesTextures(eval_images, d.builtin_image_size, d.builtin_seed, "train", transform=tf)
    test_set = ShapesTextures(eval_images // 2, d.builtin_image_size, d.builtin_seed, "val", transform=tf)
    for name, (model, meta) in models.items():
        fa, _ = extract_features(model, train_set, meta["mean"], meta["std"])  # one pass, both labels
        fb, _ = extract_features(model, test_set, meta["mean"], meta["std"])
        for label in ("texture", "shape"):
            ya = torch.from_numpy(getattr(train_set, f"{label}_labels"))
            yb = torch.from_numpy(getattr(test_set, f"{label}_labels"))
            results[name][f"{label}_knn_top1"] = knn_accuracy(fa, ya, fb, yb)
            results[name][f"{label}_linear_top1"] = linear_probe_accuracy(fa, ya, fb, yb)
    for name, stage in (("MD student", "student"), ("teacher (supervised)", "teacher")):
        results[name].update(_finetune_stage(out, stage, overwrite))
    table = format_table(results, eval_images, eval_images // 2)
    (out / "results.md").write_text(table + "\n")
    (out / "results.json").write_text(json.dumps(results, indent=1))
    print(table)
    if analysis:
        run_demo_analysis(out, overwrite=overwrite)
    return results


def _finetune_stage(out: Path, source: str, overwrite: bool) -> Dict[str, float]:
    """Fine-tune ``out/<source>`` on shape into ``out/finetune_<source>``; its final held-out top-1/5."""
    run_dir = out / f"finetune_{source}"
    fcfg = load_config("demo", [f"model.spec={out / source}"], schema=FinetuneConfig, kind="finetune")
    _stage(f"fine-tuning the {source}", run_dir, lambda **kw: finetune(fcfg, run_dir, **kw), overwrite)
    last = read_metrics(run_dir / "metrics_eval.csv")[-1]  # evaluated at the end of the schedule
    d = fcfg.data
    return {
        "shape_finetune_top1": last["top1"],
        "shape_finetune_top5": last["top5"],
        "shape_finetune_epochs": last["epoch"],
        "shape_finetune_images": d.builtin_images,
        "shape_finetune_val_images": d.builtin_val_images,
    }


def format_table(results: Dict[str, Dict[str, float]], n_train: int, n_test: int) -> str:
    lines = [
        f"Frozen-feature top-1 on held-out built-in images ({n_train} train / {n_test} test images, "
        f"10 classes each, chance 10 %)",
        "",
        "| model | texture k-NN | texture linear | shape k-NN | shape linear |",
        "|---|---|---|---|---|",
    ]
    for name, r in results.items():
        cells = [f"{r[f'{lab}_{kind}_top1'] * 100:.1f} %" for lab in ("texture", "shape") for kind in ("knn", "linear")]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    tuned = {name: r for name, r in results.items() if "shape_finetune_top1" in r}
    if tuned:
        r = next(iter(tuned.values()))
        lines += [
            "",
            f"Fine-tuned on the shape labels (configs/finetune/demo.yaml: {r['shape_finetune_images']} images x "
            f"{r['shape_finetune_epochs']:g} epochs), top-1 on {r['shape_finetune_val_images']} held-out images",
            "",
            "| model | shape top-1 | shape top-5 |",
            "|---|---|---|",
        ]
        lines += [
            f"| {name} | {r['shape_finetune_top1'] * 100:.1f} % | {r['shape_finetune_top5'] * 100:.1f} % |"
            for name, r in tuned.items()
        ]
    return "\n".join(lines)
