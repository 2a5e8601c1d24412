"""``analyze`` under torchrun: 2 gloo processes give the numbers of 1 process on the same images --
the attention and spectra statistics (and their intervals) within 1e-6 relative, the Hessian's
eigenvalues and trace within the solvers' tolerance, the landscape's losses and the accuracy, and
the same verdicts on every claim -- and only rank 0 writes."""

from __future__ import annotations

from pathlib import Path
from typing import Dict

import numpy as np
import pandas as pd
import pytest

from helpers.torchrun import torchrun
from maskdistill.probes.core.runner import run_analyze
from maskdistill.report.build import load_results
from maskdistill.report.verdicts import evaluate

pytestmark = pytest.mark.slow

# Two random-init ViTs (weights drawn from the analysis seed) with heads for the built-in classes.
MODELS = {"t": "timm:test_vit?pretrained=false&num_classes=10", "s": "timm:test_vit2?pretrained=false&num_classes=10"}
DATA = "builtin:cue_conflict"
PARAMS = {  # small solver budgets keep the test short; both runs use the same ones
    "hessian_top_eigs": {"max_iter": 20},
    "hessian_trace": {"max_iter": 10},
    "hessian_density": {"steps": 8},
    "loss_landscape_2d": {"grid": 3},
    "attention_map": {"images": [1, 8]},  # image 8 lies in rank 1's share: its maps are gathered
}
SETTINGS = dict(images=12, batch_size=5, hessian_images=14, labels="folder-order", bootstrap=200)
REPRESENTATION = (
    "attention_distance",
    "attention_entropy",
    "attention_nmi",
    "attention_map",
    "feature_fourier",
    "token_singular_values",
    "image_singular_values",
)
CURVATURE = ("hessian_top_eigs", "hessian_trace", "loss_landscape_2d")


def _cli_args(out: Path) -> list:
    args = ["maskdistill", "analyze", "--data", DATA, "--probes", "all", "--out", str(out), "--no-report"]
    for name, spec in MODELS.items():
        args += ["--model", f"{name}={spec}"]
    args += ["--pair", "t=s", "--images", "12", "--batch-size", "5", "--hessian-images", "14"]
    args += ["--labels", "folder-order", "--bootstrap", "200"]
    for probe, kv in PARAMS.items():
        args += [x for k, v in kv.items() for x in ("--param", f"{probe}.{k}={v}")]
    return args


def _tables(out: Path, model: str) -> Dict[str, pd.DataFrame]:
    return {p.stem: pd.read_csv(p) for p in sorted((out / model).glob("*.csv"))}


def _numbers(df: pd.DataFrame) -> np.ndarray:
    cols = [c for c in ("value", "ci_low", "ci_high") if c in df.columns]
    return df[cols].to_numpy(float)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("distributed")
    proc = torchrun(_cli_args(root / "two"), cwd=root, nproc=2, timeout=400)
    assert proc.returncode == 0, proc.stderr[-4000:]
    run_analyze(MODELS, DATA, "all", root / "one", pairs=[("t", "s")], params=PARAMS, progress=False, **SETTINGS)
    return root / "one", root / "two"


def test_same_probes_and_files(runs):
    one, two = runs
    for m in MODELS:
        assert sorted(p.name for p in (one / m).iterdir()) == sorted(p.name for p in (two / m).iterdir())
        assert set(REPRESENTATION + CURVATURE + ("accuracy",)) <= set(_tables(two, m))
    assert not list(two.glob("**/.*.tmp")), "a temporary file was left behind"


@pytest.mark.parametrize("model", list(MODELS))
def test_representation_statistics_match_within_1e6(runs, model):
    one, two = runs
    a, b = _tables(one, model), _tables(two, model)
    for probe in REPRESENTATION:
        x, y = _numbers(a[probe]), _numbers(b[probe])
        assert x.shape == y.shape, probe
        assert np.array_equal(np.isnan(x), np.isnan(y)), probe
        ok = ~np.isnan(x)
        # Batches differ in size between 1 and 2 processes, so float32 kernels round differently
        # (1e-7): spreads of near-equal values (the spread of entropy over heads) are compared at
        # 1e-6 of the probe's scale, every other number at 1e-6 of itself.
        scale = np.abs(x[ok]).max()
        np.testing.assert_allclose(y[ok], x[ok], rtol=1e-6, atol=1e-6 * scale, err_msg=probe)
    with np.load(one / model / "attention_map.npz") as za, np.load(two / model / "attention_map.npz") as zb:
        assert zb["maps"].shape[0] == 2  # images 1 and 8: one from each rank's share
        np.testing.assert_allclose(zb["maps"], za["maps"], rtol=1e-5, atol=1e-7)
        np.testing.assert_array_equal(zb["images"], za["images"])


@pytest.mark.parametrize("model", list(MODELS))
def test_curvature_matches_within_the_solver_tolerance(runs, model):
    one, two = runs
    a, b = _tables(one, model), _tables(two, model)
    for probe, rtol in (("hessian_top_eigs", 1e-3), ("hessian_trace", 1e-4), ("loss_landscape_2d", 1e-5)):
        x, y = a[probe], b[probe]
        assert list(x["metric"]) == list(y["metric"]), probe
        np.testing.assert_allclose(_numbers(y), _numbers(x), rtol=rtol, atol=1e-6, err_msg=probe)
    eig = b["hessian_top_eigs"]
    assert (eig.metric == "eigenvalue").sum() == 2
    assert float(a["accuracy"].value.iloc[0]) == float(b["accuracy"].value.iloc[0])


def test_the_same_verdicts(runs):
    one, two = runs
    va = evaluate([("t", "s")], load_results(one)[1])
    vb = evaluate([("t", "s")], load_results(two)[1])
    assert len(va) >= 8
    assert list(va["claim"]) == list(vb["claim"])
    assert list(va["verdict"]) == list(vb["verdict"])


def test_results_record_the_processes_and_one_manifest(runs):
    import json

    one, two = runs
    meta = json.loads((two / "t" / "attention_distance.json").read_text())
    assert meta["processes"] == 2 and meta["images"] == 12
    assert json.loads((one / "t" / "attention_distance.json").read_text())["processes"] == 1
    hess = json.loads((two / "s" / "hessian_trace.json").read_text())
    assert hess["images"] == 14 and hess["n_batches"] == 3  # 14 images in batches of 5, split over ranks
    manifest = json.loads((two / "analyze.json").read_text())
    assert manifest["models"]["t"]["processes"] == 2 and manifest["pairs"] == [["t", "s"]]
