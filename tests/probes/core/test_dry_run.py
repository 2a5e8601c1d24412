"""``analyze --dry-run`` prints the plan of an analysis without reading any image beyond its one
timing batch, and its counts are those the analysis then does: the shared pass's forward passes,
the accuracy's, quadrature's products and the landscape's loss evaluations exactly, each solver's
products within the budget it prints."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from maskdistill.data.folder import ImageFolder
from maskdistill.probes.core.dry_run import plan_analyze
from maskdistill.probes.core.runner import run_analyze

pytestmark = pytest.mark.slow

MODEL = {"vit": "timm:test_vit?pretrained=false&num_classes=3"}
PROBES = (
    "attention_distance,token_singular_values,accuracy,hessian_top_eigs,hessian_trace,hessian_density,loss_landscape_2d"
)
PARAMS = {"hessian_trace": {"max_iter": 12}, "hessian_density": {"steps": 6}, "loss_landscape_2d": {"grid": 3}}
ARGS = dict(images=10, batch_size=4, hessian_images=9, labels="folder-order", params=PARAMS)


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("imgs")
    rng = np.random.default_rng(0)
    for c in ("a", "b", "c"):
        (root / c).mkdir()
        for i in range(6):
            Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(root / c / f"{i}.png")
    return root


@pytest.fixture(scope="module")
def planned_and_run(folder, tmp_path_factory):
    loaded = []
    original = ImageFolder.__getitem__

    def counting(self, i):
        loaded.append(i)
        return original(self, i)

    mp = pytest.MonkeyPatch()
    mp.setattr(ImageFolder, "__getitem__", counting)
    try:
        plan = plan_analyze(MODEL, str(folder), PROBES, **ARGS)
    finally:
        mp.undo()
    out = tmp_path_factory.mktemp("run")
    run_analyze(MODEL, str(folder), PROBES, out, progress=False, **ARGS)
    return plan, loaded, out / "vit"


def _meta(folder: Path, probe: str) -> dict:
    return json.loads((folder / f"{probe}.json").read_text())


def test_the_plan_loads_only_the_timing_batch(planned_and_run):
    _, loaded, _ = planned_and_run
    assert 0 < len(loaded) <= ARGS["batch_size"], loaded


def test_exact_counts_match_the_run(planned_and_run):
    plan, _, res = planned_and_run
    row = {(r.probe, r.work.split(" (")[0]): r for r in plan.itertuples()}
    shared = plan[plan.probe == "shared pass"].iloc[0]
    assert shared["count"] == _meta(res, "attention_distance")["forward_passes"] == 3  # 10 images in 4s
    assert shared["images"] == _meta(res, "attention_distance")["images"] == 10
    accuracy = plan[plan.probe == "accuracy"].iloc[0]
    assert accuracy["count"] == 3 and accuracy["images"] == _meta(res, "accuracy")["n_images"]
    density = plan[plan.probe == "hessian_density"].iloc[0]
    assert density["count"] == _meta(res, "hessian_density")["products"] == 6
    assert density["images"] == _meta(res, "hessian_density")["images"] == 9
    losses = plan[(plan.probe == "loss_landscape_2d") & (plan.unit == "loss")].iloc[0]
    with np.load(res / "loss_landscape_2d.npz") as z:
        assert losses["count"] == z["loss"].size == 9
    assert len(row) == len(plan)


def test_solver_products_stay_within_the_printed_budget(planned_and_run):
    plan, _, res = planned_and_run
    for probe in ("hessian_top_eigs", "hessian_trace"):
        steps = plan[(plan.probe == probe) & plan.unit.notna()]
        assert steps["bound"].all(), probe
        budget = int(steps["count"].sum())
        if probe == "hessian_trace":  # its Lanczos part is the one hessian_top_eigs pays for
            budget += int(plan[(plan.probe == "hessian_top_eigs")].iloc[0]["count"])
        done = _meta(res, probe)["products"]
        assert 0 < done <= budget, (probe, done, budget)
    shared = plan[plan.work.str.startswith("shares the Lanczos run")]
    assert set(shared.probe) == {"hessian_trace", "loss_landscape_2d"}


def test_the_estimate_is_a_positive_time_and_nothing_is_written(planned_and_run, folder):
    plan, _, _ = planned_and_run
    timed = plan[plan.unit.notna()]
    assert (timed.seconds > 0).all() and np.isfinite(timed.seconds).all()
    assert not (folder / "analyze.json").exists()


def test_the_cli_prints_the_plan_and_writes_nothing(folder, tmp_path, capsys):
    from maskdistill.cli import main

    out = tmp_path / "plan_only"
    args = ["analyze", "--model", f"vit={MODEL['vit']}", "--data", str(folder), "--out", str(out), "--dry-run"]
    args += ["--probes", "attention_distance,hessian_density", "--images", "10", "--batch-size", "4"]
    args += ["--labels", "folder-order", "--param", "hessian_density.steps=6"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "plan on 1 process(es), device cpu" in printed
    assert "3 forward passes (captured) of ≤ 4 images per process" in printed
    assert "6 Hessian-vector products over 4 images (quadrature)" in printed
    assert not out.exists()
