"""Decision probes on the real data of ``helpers.realdata`` (skipped when absent): model-vs-human's human
responses, texture-vs-shape's CNN decisions, the cue-conflict / edge / silhouette stimuli and a real
ImageNet classifier (quantized MobileNetV2, TorchScript, batch size 1 only)."""

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from helpers.realdata import require
from maskdistill.data.distortions import CONDITIONS
from maskdistill.models.spec import ModelInfo
from maskdistill.probes.core.registry import run_probe
from maskdistill.probes.decisions.consistency import error_consistency
from maskdistill.probes.decisions.imagenet16 import category_indices, imagenet16
from maskdistill.probes.decisions.ood_summary import excluded_conditions, pairwise_consistency
from maskdistill.probes.decisions.responses import condition_key, read_responses
from maskdistill.probes.decisions.shape_bias import shape_bias

RAW = "model-vs-human/raw-data"
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)

# model-vs-human's fixed exclusion list (modelvshuman/plotting/plot.py, EXCLUDE_CONDITIONS: controls and
# conditions with mean human accuracy < 0.2), in the spelling of the human files.
MVH_EXCLUDED = {
    "colour": ["cr"],
    "contrast": ["c100", "c03", "c01"],
    "high-pass": ["inf", "0.55", "0.45", "0.4"],
    "low-pass": ["0", "15", "40"],
    "phase-scrambling": ["0", "150", "180"],
    "power-equalisation": ["0"],
    "false-colour": ["true"],
    "rotation": ["0"],
    "eidolonI": ["1-10-10", "64-10-10", "128-10-10"],
    "eidolonII": ["1-3-10", "32-3-10", "64-3-10", "128-3-10"],
    "eidolonIII": ["1-0-10", "16-0-10", "32-0-10", "64-0-10", "128-0-10"],
    "uniform-noise": ["0.0", "0.6", "0.9"],
}


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # batch-1 inference on 2 shared cores: 10 ms/image on 1 thread, ~30x slower on 2
    yield
    torch.set_num_threads(threads)


def _raw(dataset: str):
    return require(f"{RAW}/{dataset}/{dataset}_subject-01_session_1.csv").parent


def test_shipped_mapping_equals_the_shared_facts():
    shared = json.loads(require("model-vs-human/imagenet_16class_indices.json").read_text())["categories"]
    assert category_indices() == {k: v["imagenet_indices"] for k, v in shared.items()}
    assert {c["name"]: c["wnids"] for c in imagenet16()["categories"]} == {k: v["wnids"] for k, v in shared.items()}
    assert "model-vs-human" in imagenet16()["source"]


def test_human_subject_01_shape_bias():
    sb = shape_bias(read_responses(_raw("cue-conflict")))
    row = sb[(sb.subj == "subject-01") & (sb.category == "all")].iloc[0]
    assert round(row.shape_bias, 3) == 0.962 and row.n_trials == 1200  # 80 shape = texture images dropped


def test_texture_vs_shape_cnns_shape_bias():
    """Geirhos et al. 2019, Fig. 4: AlexNet 42.9 %, GoogLeNet 31.2 %, VGG-16 17.2 %, ResNet-50 22.1 %."""
    exp = "style-transfer-512-nomask-experiment"
    resp = read_responses(require(f"texture-vs-shape/raw-data/{exp}/{exp}_vgg_session_1.csv").parent)
    trained = read_responses(
        require(f"texture-vs-shape/raw-data/{exp}-trained-CNNs/{exp}_resnet50_session-1.csv").parent
    )
    sb = shape_bias(resp).query("category == 'all'").set_index("subj")["shape_bias"]
    sb = sb.combine_first(shape_bias(trained).query("category == 'all'").set_index("subj")["shape_bias"])
    assert {m: round(100 * sb[m], 1) for m in ("alexnet", "googlenet", "vgg", "resnet50")} == {
        "alexnet": 42.9,
        "googlenet": 31.2,
        "vgg": 17.2,
        "resnet50": 22.1,
    }


def test_exclusions_from_human_data_reproduce_model_vs_human():
    require(f"{RAW}/colour/colour_subject-01_session_1.csv")
    humans = read_responses([_raw(d) for d in MVH_EXCLUDED])
    ex = excluded_conditions(humans, list(MVH_EXCLUDED))
    got = {d: sorted(condition_key(c) for c in g["condition"]) for d, g in ex.groupby("dataset")}
    assert got == {d: sorted(condition_key(c) for c in v) for d, v in MVH_EXCLUDED.items()}
    for ds, levels in CONDITIONS.items():  # our published levels are exactly the human conditions
        conds = humans.loc[humans.dataset == ds, "condition"].unique()
        assert sorted(map(condition_key, conds)) == sorted(map(condition_key, levels)), ds


def test_human_human_error_consistency_cue_conflict_edge_silhouette():
    humans = read_responses([_raw(d) for d in ("cue-conflict", "edge", "silhouette")])
    pairs = pairwise_consistency(None, humans)
    assert pairs.groupby("dataset").size().to_dict() == {"cue-conflict": 45, "edge": 45, "silhouette": 45}
    # one pair by hand: align on the image, count, apply the formula
    a = humans[(humans.dataset == "edge") & (humans.subj == "subject-01")].set_index("image_id")
    b = humans[(humans.dataset == "edge") & (humans.subj == "subject-07")].set_index("image_id").loc[a.index]
    ca, cb = (a.object_response == a.category).to_numpy(), (b.object_response == b.category).to_numpy()
    p1, p2 = ca.mean(), cb.mean()
    c_exp, c_obs = p1 * p2 + (1 - p1) * (1 - p2), (ca == cb).mean()
    row = pairs[(pairs.dataset == "edge") & (pairs.observer == "subject-01") & (pairs.human == "subject-07")].iloc[0]
    assert row.kappa == pytest.approx((c_obs - c_exp) / (1 - c_exp)) and row.n_trials == 160
    mean = pairs.groupby("dataset")["kappa"].mean()
    assert ((mean > 0.2) & (mean < 0.7)).all(), mean  # humans agree on their errors well above chance (0)


@pytest.mark.slow
def test_real_imagenet_classifier_on_cue_conflict(tmp_path):
    """The real MobileNetV2 (batch 1) on all cue-conflict images present: shape bias, 16-class accuracy
    and error consistency against each human on the same trials (all 320 images: ~10 ms each)."""
    images = require("cue-conflict/style-transfer-preprocessed-512/bird/bird1-bicycle2.png").parents[1]
    stimuli = images.parent  # cue-conflict/ holds edges, filled-silhouettes and the style-transfer set
    model = torch.jit.load(str(require("models/mobilenet_v2_quantized_imagenet.pt"))).eval()
    info = ModelInfo(
        spec="mobilenet_v2_quantized",
        arch="mobilenet_v2",
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        img_size=224,
        crop_pct=0.875,
        interpolation="bilinear",
        num_classes=1000,
    )
    ctx = SimpleNamespace(model=model, info=info, name="mobilenet_v2", batch_size=1, memo={})
    sb = run_probe("shape_bias", ctx, {"stimuli": str(stimuli), "responses_dir": str(tmp_path)})
    ec = run_probe(
        "error_consistency",
        ctx,
        {"stimuli": str(stimuli), "datasets": ["cue-conflict"], "raw_data": str(_raw("cue-conflict").parent)},
    )
    t = sb.table.set_index(["category", "metric"])["value"]
    assert sb.meta["decision_mapping"] == "imagenet16" and sb.meta["images"] == 320
    assert t[("all", "shape_bias")] < 0.5  # ImageNet CNNs decide by texture (Geirhos et al. 2019)
    assert t[("all", "fraction_shape")] + t[("all", "fraction_texture")] > 0.4  # far above chance (2/16)
    assert 1 / 16 < t[("all", "accuracy")] < 1
    # the decisions are softmax -> mean over each category's indices -> arg-max, image by image
    model_resp = read_responses(tmp_path / "cue-conflict_mobilenet_v2_session_1.csv", dataset="cue-conflict")
    from PIL import Image

    from maskdistill.probes.decisions.evaluate import input_transform

    tf = input_transform(224, 0.875, "bilinear")
    for row in model_resp.iloc[[0, 101, 250]].itertuples():
        x = tf(Image.open(images / row.category / row.image_id).convert("RGB")).float()[None] / 255
        x = (x - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
        p = model(x).softmax(1)[0]
        means = {c: float(p[i].mean()) for c, i in category_indices().items()}
        assert row.object_response == max(means, key=means.get)
    # error consistency with each human on the 320 shared trials
    per_human = ec.table[(ec.table.metric == "kappa") & (ec.table.observer == "mobilenet_v2")]
    assert len(per_human) == 10 and (per_human.n_trials == 320).all()
    human01 = read_responses(_raw("cue-conflict") / "cue-conflict_subject-01_session_1.csv")
    ref = error_consistency(model_resp, human01, intersect=True)
    assert per_human.set_index("human").loc["subject-01", "value"] == pytest.approx(ref.kappa)
    with pytest.raises(ValueError, match="different trials"):
        error_consistency(model_resp, human01)  # 320 of 1280 images present: only with intersect
    summary = ec.table[ec.table.human == "all"].set_index(["observer", "metric"])["value"]
    assert summary[("humans", "error_consistency")] > summary[("mobilenet_v2", "error_consistency")]
    assert np.isfinite(per_human.value).all() and (per_human.value.abs() <= 1).all()
