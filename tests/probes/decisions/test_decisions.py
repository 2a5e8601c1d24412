"""Decision probes (paper Sec. 5, App. C): analytic checks of error
consistency and shape bias, the 16-class mapping, response tables in model-vs-human's format, the
aggregation of Fig. 12, stimulus readers, the built-in cue-conflict set and -- end to end on built-in
data -- the shape bias of a classifier trained on shapes."""

import time
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

from maskdistill.data.builtin_conflict import BuiltinCueConflict
from maskdistill.probes.core.registry import probe_names, run_probe
from maskdistill.probes.decisions.consistency import consistency_from_correct, error_consistency, kappa
from maskdistill.probes.decisions.imagenet16 import (
    categories16,
    category_indices,
    decision_mapping_for,
    sixteen_class_probabilities,
)
from maskdistill.probes.decisions.ood_summary import excluded_conditions, pairwise_consistency, summarise
from maskdistill.probes.decisions.responses import (
    condition_key,
    image_id,
    make_responses,
    read_responses,
    write_responses,
)
from maskdistill.probes.decisions.shape_bias import shape_bias, texture_category
from maskdistill.probes.decisions.stimuli import find_stimulus_sets, read_stimuli


def _resp(subj, correct, dataset="ds", condition="0", category="cat"):
    """A response table whose trial t is right (object_response == category) iff correct[t]."""
    n = len(correct)
    dec = [category if c else "dog" for c in correct]
    return make_responses(subj, dataset, [category] * n, [condition] * n, [f"img{i}.png" for i in range(n)], dec)


# ---------------------------------------------------------------------------------------------- kappa
def test_kappa_identical_anticorrelated_independent():
    rng = np.random.default_rng(0)
    a = rng.random(2000) < 0.7
    assert error_consistency(_resp("m", a), _resp("subject-01", a)).kappa == 1.0
    half = np.arange(1000) % 2 == 0  # p = 0.5 each, always opposite
    c = error_consistency(_resp("m", half), _resp("subject-01", ~half))
    assert c.kappa == pytest.approx(-1.0) and c.expected == pytest.approx(0.5) and c.observed == 0.0
    x, y = rng.random(200_000) < 0.6, rng.random(200_000) < 0.3
    assert abs(consistency_from_correct(x, y).kappa) < 0.01


def test_kappa_hand_computed_case():
    # p1 = 0.75, p2 = 0.5, both right on 2 of 4, both wrong on 1 of 4 -> c_obs = 0.75, c_exp = 0.5
    c = consistency_from_correct(np.array([1, 1, 1, 0], bool), np.array([1, 1, 0, 0], bool))
    assert (c.accuracy_a, c.accuracy_b, c.observed, c.expected) == (0.75, 0.5, 0.75, 0.5)
    assert c.kappa == pytest.approx(0.5) == kappa(0.75, 0.5)


def test_error_consistency_needs_same_trials_or_intersect():
    a, b = _resp("m", [True] * 6), _resp("subject-01", [True, False] * 5)
    with pytest.raises(ValueError, match=r"different trials.*intersect=True.*6 shared"):
        error_consistency(a, b)
    c = error_consistency(a, b, intersect=True)
    assert c.n_trials == 6 and c.accuracy_b == pytest.approx(0.5)
    with pytest.raises(ValueError, match="repeated trials"):
        error_consistency(pd.concat([a, a]), a)


# ----------------------------------------------------------------------------------------- shape bias
def _conflict(decide):
    shapes, textures = ["cat", "dog", "car", "cat"], ["dog", "car", "cat", "cat"]  # the last agrees: dropped
    ids = [f"{s}{i}-{t}{i}.png" for i, (s, t) in enumerate(zip(shapes, textures))]
    return make_responses("m", "cue-conflict", shapes, ["0"] * 4, ids, [decide(s, t) for s, t in zip(shapes, textures)])


def test_shape_bias_all_texture_all_shape_and_neither():
    assert texture_category("0001_s5n_s01_0_bird_00_bird3-clock2.png") == "clock"
    all_texture = shape_bias(_conflict(lambda s, t: t))
    all_shape = shape_bias(_conflict(lambda s, t: s))
    assert all_texture.loc[all_texture.category == "all", "shape_bias"].item() == 0.0
    assert all_shape.loc[all_shape.category == "all", "shape_bias"].item() == 1.0
    assert all_shape.loc[all_shape.category == "all", "n_trials"].item() == 3  # agreeing image dropped
    other = shape_bias(_conflict(lambda s, t: "boat" if s == "cat" else s))  # neither cue: counts in neither
    row = other.loc[other.category == "all"].iloc[0]
    assert (row.n_shape, row.n_texture, row.shape_bias) == (2, 0, 1.0)
    assert np.isnan(other.loc[other.category == "cat", "shape_bias"].item())


# ---------------------------------------------------------------------------------- decision mapping
def test_sixteen_class_mapping_is_the_mean_over_indices():
    idx = category_indices()
    assert len(idx) == 16 and sum(map(len, idx.values())) == 207 and idx["knife"] == [499]
    logits = torch.full((2, 1000), -20.0)
    logits[0, idx["dog"]] = 3.0  # all 109 dog indices high: sum large, mean small per index
    logits[0, idx["knife"]] = 6.0  # one knife index higher
    logits[1] = torch.randn(1000)
    p16 = sixteen_class_probabilities(logits)
    probs = logits.softmax(1)
    ref = torch.stack([probs[:, i].mean(1) for i in idx.values()], 1)
    assert torch.allclose(p16, ref, atol=1e-7)
    assert categories16()[int(p16[0].argmax())] == "knife"  # a sum over indices would say dog


def test_decision_mapping_choice_and_errors():
    assert decision_mapping_for(1000, [], ["dog", "cat"]).kind == "imagenet16"
    m = decision_mapping_for(3, ["b", "a", "c"], ["a", "b", "c"])  # same classes, other order
    assert m.kind == "direct" and m.names(m.decide(torch.tensor([[0.0, 9.0, 1.0]]))) == ["a"]
    alias = decision_mapping_for(2, ["stripes", "dots"], ["circle", "square"], aliases=[["stripes", "dots"]])
    assert alias.names(alias.decide(torch.tensor([[0.0, 1.0]]))) == ["square"]
    with pytest.raises(ValueError, match=r"10 outputs.*1000 outputs -> 16-class.*label set \(direct\)"):
        decision_mapping_for(10, [f"c{i}" for i in range(10)], ["dog", "cat"])
    with pytest.raises(ValueError, match="ImageNet-1k classifier decides among the 16"):
        decision_mapping_for(1000, [], ["circle", "square"])


# ------------------------------------------------------------------------------------ response tables
def test_responses_round_trip_in_model_vs_human_format(tmp_path):
    r = make_responses(
        "resnet", "cue-conflict", ["bird", "cat"], ["0", "0"], ["bird3-cat2.png", "cat1-dog1.png"], ["cat", "cat"]
    )
    path = write_responses(r, tmp_path)
    assert path.name == "cue-conflict_resnet_session_1.csv"
    header = path.read_text().splitlines()[0]
    assert header == "subj,session,trial,rt,object_response,category,condition,imagename"
    # a human file of another dataset, with model-vs-human's capitalised "Session"
    (tmp_path / "h.csv").write_text(
        "subj,Session,trial,rt,object_response,category,condition,imagename\n"
        "subject-01,1,1,0.8,oven,oven,0.00,0001_nse_s01_0.00_oven_10_n04111531_1.png\n"
    )
    back = read_responses([path, tmp_path / "h.csv"], dataset="x")
    assert list(back.columns[:8]) == [
        "subj",
        "session",
        "trial",
        "rt",
        "object_response",
        "category",
        "condition",
        "imagename",
    ]
    assert back["image_id"].tolist() == ["bird3-cat2.png", "cat1-dog1.png", "n04111531_1.png"]
    assert back["rt"].isna().tolist() == [True, True, False] and back["condition"].iloc[2] == "0.00"
    assert image_id("bird3-bird2.png") == "bird3-bird2.png"
    assert condition_key("0.00") == condition_key("0") == "0" and condition_key("0.10") == condition_key("0.1")
    assert condition_key("True") == "true" and condition_key("inf") == "inf"
    with pytest.raises(ValueError, match="lacks the column"):
        (tmp_path / "bad.csv").write_text("a,b\n1,2\n")
        read_responses(tmp_path / "bad.csv")


# ------------------------------------------------------------------------------------- aggregation
def test_exclusions_pairs_and_summary():
    # two humans and a model on a parametric set: condition c100 is the control, c01 below 0.2 humans
    rng = np.random.default_rng(1)
    frames = []
    for cond, p in (("c100", 0.9), ("c30", 0.7), ("c01", 0.1)):
        h1 = rng.random(200) < p
        frames += [
            _resp("subject-01", h1, "contrast", cond),
            _resp("subject-02", rng.random(200) < p, "contrast", cond),
            _resp("model", h1 if cond == "c30" else ~h1, "contrast", cond),
        ]
    resp = pd.concat(frames, ignore_index=True)
    humans = resp[resp.subj.str.startswith("subject")]
    ex = excluded_conditions(humans, ["contrast"])
    assert sorted(zip(ex.condition, ex.reason)) == [("c01", "human accuracy <= 0.2"), ("c100", "control")]
    pairs = pairwise_consistency(resp[resp.subj == "model"], humans)
    assert len(pairs) == 3 * 2 + 3  # model x 2 humans + 1 human pair, per condition
    k = pairs.set_index(["observer", "human", "condition"])["kappa"]
    assert k[("model", "subject-01", "c30")] == 1.0 and k[("model", "subject-01", "c100")] < 0
    s = summarise(pairs, resp, ex).set_index("observer")
    # only c30 is kept: model vs subject-01 is 1, vs subject-02 independent
    kept = pairs[pairs.condition == "c30"].set_index(["observer", "human"])["kappa"]
    assert s.loc["model", "error_consistency"] == pytest.approx(kept.loc["model"].mean())
    assert s.loc["humans", "error_consistency"] == pytest.approx(kept.loc[("subject-01", "subject-02")])
    assert s.loc["model", "ood_accuracy"] == pytest.approx(
        resp[(resp.subj == "model") & (resp.condition == "c30")].eval("object_response == category").mean()
    )


# ------------------------------------------------------------------------------- stimuli on disk
def _png(path):
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), (120, 30, 200)).save(path)


def test_stimulus_folders_layouts_and_unknown_names(tmp_path):
    _png(tmp_path / "edges" / "cat" / "cat1.png")
    _png(tmp_path / "style-transfer-preprocessed-512" / "dog" / "dog1-cat2.png")
    _png(tmp_path / "contrast" / "dnn" / "session-1" / "0001_cop_s01_c05_knife_10_n03041632_7380.png")
    sets = find_stimulus_sets(tmp_path)
    assert sorted(sets) == ["contrast", "cue-conflict", "edge"]
    s = read_stimuli(sets["contrast"], "contrast").stimuli[0]
    assert (s.category, s.condition, s.image_id) == ("knife", "c05", "n03041632_7380.png")
    cc = read_stimuli(sets["cue-conflict"])
    assert cc.dataset == "cue-conflict" and cc[0][1] == cc.classes.index("dog")
    _png(tmp_path / "sketches" / "cat" / "x.png")
    _png(tmp_path / "misc" / "y.png")
    with pytest.raises(ValueError, match=r"unknown stimulus folder\(s\).*misc, sketches.*known names"):
        find_stimulus_sets(tmp_path)
    _png(tmp_path / "edges" / "kitten" / "k1.png")
    with pytest.raises(ValueError, match="unknown category folder.*kitten"):
        read_stimuli(sets["edge"])


def test_builtin_cue_conflict_labels():
    ds = BuiltinCueConflict(num_images=180, image_size=32, num_classes=10)
    a, b = ds.shape_labels, ds.texture_labels
    assert (a != b).all() and np.bincount(a * 10 + b, minlength=100).max() == 2  # every pair twice
    assert [texture_category(i) for i in ds.image_ids[:5]] == [ds.classes[t] for t in b[:5]]
    img, label = ds[3]
    assert img.size == (32, 32) and label == a[3]
    assert np.array_equal(np.asarray(ds.load(3)), np.asarray(BuiltinCueConflict(180, image_size=32).load(3)))  # seeded


def test_probes_are_registered():
    assert {"shape_bias", "ood_accuracy", "error_consistency"} <= set(probe_names())


# ------------------------------------------------------------------ built-in shape bias
@pytest.mark.slow
def test_classifier_trained_on_shapes_has_a_shape_bias(tmp_path):
    """A tiny ViT trained by ``train_classifier`` on the built-in shape labels decides by shape on the
    native cue-conflict images; the same architecture untrained is at 0.5 (no preference)."""
    from maskdistill.config import load_config
    from maskdistill.models.spec import load_model
    from maskdistill.train.classify import ClassifyConfig, train_classifier

    start = time.perf_counter()
    cfg = load_config(
        "demo_teacher",
        [
            "data.builtin_label=shape",
            "data.builtin_images=800",
            "data.img_size=32",
            "data.builtin_image_size=32",
            "data.min_scale=0.8",
            "data.hflip=0.0",
            "train.epochs=5",
            "train.device=cpu",
            "train.log_every=1000",
            "optim.lr=3e-3",
            "optim.warmup_epochs=0.5",
            "label_smoothing=0.0",
            "model.kwargs={patch_size: 8, embed_dim: 64, depth: 2, num_heads: 2, global_pool: avg}",
        ],
        schema=ClassifyConfig,
        kind="classify",
    )
    torch.manual_seed(0)
    train_classifier(cfg, tmp_path / "run")
    model, info = load_model(str(tmp_path / "run"))
    assert info.classes[:3] == ["circle", "square", "triangle"]
    trained = run_probe(
        "shape_bias",
        SimpleNamespace(model=model, info=info, name="shape-trained"),
        {"stimuli": "builtin", "builtin_images": 270},
    )
    import timm

    untrained_model = timm.create_model(info.arch, pretrained=False, **info.kwargs)
    untrained = run_probe(
        "shape_bias",
        SimpleNamespace(model=untrained_model, info=info, name="untrained"),
        {"stimuli": "builtin", "builtin_images": 270},
    )

    def value(res, metric):
        t = res.table
        return float(t[(t.category == "all") & (t.metric == metric)]["value"].iloc[0])

    seconds = time.perf_counter() - start
    assert trained.meta["decision_mapping"] == "direct"
    # measured: shape bias 0.87, 42 % shape decisions (chance 10 %), ~15 s on one busy CPU core
    assert value(trained, "shape_bias") > 0.7, f"shape bias {value(trained, 'shape_bias'):.2f} after {seconds:.0f} s"
    assert value(trained, "fraction_shape") > 0.25
    assert abs(value(untrained, "shape_bias") - 0.5) < 0.2  # no preference without training


# ------------------------------------------------------------------------- command and figures
def _write_raw(root):
    """model-vs-human layout: a parametric set (2 humans + a model) and a cue-conflict set."""
    rng = np.random.default_rng(3)
    for subj in ("subject-01", "subject-02", "resnet"):
        frames = [
            _resp(subj, rng.random(40) < p, "contrast", c) for c, p in (("c100", 0.9), ("c10", 0.6), ("c01", 0.05))
        ]
        write_responses(pd.concat(frames, ignore_index=True), root / "contrast")
        shapes = ["cat", "dog", "car", "bird"] * 5
        textures = ["dog", "car", "bird", "cat"] * 5
        ids = [f"{s}{i}-{t}{i}.png" for i, (s, t) in enumerate(zip(shapes, textures))]
        decide = (lambda s, t: s) if subj.startswith("subject") else (lambda s, t: t)  # humans shape, model texture
        write_responses(
            make_responses(
                subj, "cue-conflict", shapes, ["0"] * 20, ids, [decide(s, t) for s, t in zip(shapes, textures)]
            ),
            root / "cue-conflict",
        )


def test_decisions_command_summarises_response_files(tmp_path, capsys):
    from maskdistill.cli import main

    _write_raw(tmp_path / "raw")
    assert main(["decisions", "--raw-data", str(tmp_path / "raw"), "--out", str(tmp_path / "out")]) == 0
    out = tmp_path / "out"
    for name in ("accuracy", "consistency", "excluded", "shape_bias", "summary"):
        assert (out / f"{name}.csv").is_file(), name
    for fig in ("cue-conflict_shape_bias", "accuracy_per_condition", "error_consistency_per_condition", "summary"):
        assert (out / f"{fig}.png").stat().st_size > 1000 and (out / f"{fig}.pdf").is_file(), fig
    sb = pd.read_csv(out / "shape_bias.csv").query("category == 'all'").set_index("subj")["shape_bias"]
    assert sb.to_dict() == {"resnet": 0.0, "subject-01": 1.0, "subject-02": 1.0}
    ex = pd.read_csv(out / "excluded.csv", dtype=str)
    assert sorted(ex.loc[ex.dataset == "contrast", "condition"]) == ["c01", "c100"]
    summary = pd.read_csv(out / "summary.csv").set_index("observer")
    assert set(summary.index) == {"humans", "resnet"} and summary.loc["humans", "n_datasets"] == 2
    assert "tables and figures in" in capsys.readouterr().out
    assert main(["decisions", "--raw-data", str(tmp_path / "missing")]) == 2


def test_plots_accept_probe_results(tmp_path):
    from maskdistill.probes.core.registry import ProbeResult
    from maskdistill.report.plots.decisions import plot_condition_curves, plot_shape_bias, plot_summary

    sb = ProbeResult(
        "shape_bias",
        "vit",
        pd.DataFrame({"category": ["all", "cat", "dog"], "metric": "shape_bias", "value": [0.4, 0.3, 0.5]}),
    )
    paths = plot_shape_bias({"vit": sb}, tmp_path / "sb")
    assert [p.suffix for p in paths] == [".png", ".pdf"] and all(p.is_file() for p in paths)
    ec = pd.DataFrame(
        {
            "observer": ["vit", "vit", "humans", "vit", "vit"],
            "human": ["all", "all", "all", "s1", "s1"],
            "dataset": ["all", "all", "all", "contrast", "contrast"],
            "condition": ["kept", "kept", "kept", "c50", "c10"],
            "metric": ["error_consistency", "ood_accuracy", "error_consistency", "kappa", "kappa"],
            "value": [0.2, 0.5, 0.4, 0.3, 0.1],
        }
    )
    res = ProbeResult("error_consistency", "vit", ec)
    assert len(plot_summary(res, tmp_path / "summary")) == 2
    assert len(plot_condition_curves(res, tmp_path / "kappa", metric="kappa")) == 2
    assert plot_condition_curves(res, tmp_path / "none", metric="accuracy") == []  # nothing to draw


def test_ood_accuracy_on_distorted_copies_of_base_images(tmp_path):
    """Parametric sets are made on the fly from clean 16-class images with every published condition."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for cat in ("cat", "dog"):
        for i in range(2):
            (tmp_path / "base" / cat).mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(
                tmp_path / "base" / cat / f"{i}.png"
            )
    idx = category_indices()

    class AlwaysDog(torch.nn.Module):  # 1000 ImageNet logits, the highest on the dog indices
        def forward(self, x):
            out = torch.zeros(x.shape[0], 1000) + x.mean() * 0
            out[:, idx["dog"]] = 5.0
            return out

    from maskdistill.models.spec import ModelInfo

    info = ModelInfo(spec="dog", arch="dog", mean=(0.5,) * 3, std=(0.25,) * 3, img_size=32, num_classes=1000)
    ctx = SimpleNamespace(model=AlwaysDog(), info=info, name="dog", memo={})
    res = run_probe(
        "ood_accuracy",
        ctx,
        {
            "base_images": str(tmp_path / "base"),
            "datasets": ["contrast", "rotation", "power-equalisation", "eidolonIII"],
        },
    )
    t = res.table
    per_cond = t[(t.metric == "accuracy") & (t.condition != "kept")]
    assert per_cond.groupby("dataset").size().to_dict() == {
        "contrast": 8,
        "eidolonIII": 8,
        "power-equalisation": 2,
        "rotation": 4,
    }
    assert (per_cond.n_trials == 4).all() and np.allclose(per_cond.value, 0.5)  # always "dog": 2 of 4 right
    kept = t[(t.condition == "kept") & (t.metric == "accuracy")].set_index("dataset")["n_trials"]
    assert kept.to_dict() == {"contrast": 28, "eidolonIII": 28, "power-equalisation": 4, "rotation": 12}  # controls out
    assert t[t.metric == "ood_accuracy"].value.item() == pytest.approx(0.5)
    with pytest.raises(ValueError, match="no stimuli"):
        run_probe("ood_accuracy", SimpleNamespace(model=AlwaysDog(), info=info), {"datasets": ["contrast"]})
