"""Labels mapped by name onto a classifier's head: a texture head refused on shape labels (with the
fix) and accepted on texture labels; WordNet-id folders get timm's ImageNet indices; folder order only
when stated, and recorded."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from tests.helpers.models import tiny_vit
from timm.data import ImageNetInfo

from maskdistill.data.analysis_data import parse_data
from maskdistill.data.synthetic import SHAPES, TEXTURES, ShapesTextures
from maskdistill.models.spec import describe_model
from maskdistill.probes.core.context import ProbeContext
from maskdistill.probes.core.intervals import Bootstrap
from maskdistill.probes.core.registry import get_probe
from maskdistill.probes.core.runner import _skipped

HEAD = ("classifier", "labels")


def _ctx(data: str, classes=(), num_classes: int = 10, **kw) -> ProbeContext:
    model = tiny_vit("rgb32", depth=1, num_classes=num_classes)
    info = describe_model(model, "tiny", "tiny", overrides={"img_size": 32, "classes": list(classes)})
    return ProbeContext("tiny", model, info, parse_data(data), images=12, batch_size=6, **kw)


def test_texture_head_refused_on_shape_labels_with_the_fix_and_accepted_on_texture_labels():
    ctx = _ctx("builtin:val?size=32", classes=list(TEXTURES))
    (why,) = ctx.missing(HEAD)
    assert "horizontal_stripes" not in why.split("(")[0] and "circle" in why
    assert "--data builtin:val?label=texture&size=32" in why
    with pytest.raises(ValueError, match="label=texture"):
        _skipped(ctx, [get_probe("hessian_top_eigs")], {}, explicit=True)
    assert "hessian_top_eigs" in _skipped(ctx, [get_probe("hessian_top_eigs")], {}, explicit=False)
    with pytest.raises(ValueError, match="label=texture"):
        ctx.labelled_batches(1, 6)
    assert all((y == -1).all() for _, y in ctx.batches())  # no data index posing as a head index
    assert "label_map" not in ctx.meta()

    reversed_head = list(TEXTURES)[::-1]  # output k is texture 9 - k: the map must follow the names
    ok = _ctx("builtin:val?size=32&label=texture", classes=reversed_head)
    assert ok.missing(HEAD) == []
    truth = ShapesTextures(12, 32, 0, "val", label="texture").targets
    got = torch.cat([y for _, y in ok.labelled_batches(2, 6)]).numpy()
    assert np.array_equal(got, 9 - truth)
    meta = ok.meta()
    assert meta["label_map"] == "by name" and meta["label_indices"]["horizontal_stripes"] == 9


def test_shape_bias_refuses_a_texture_head_on_the_builtin_cue_conflict_set():
    ctx = _ctx("builtin:cue_conflict?size=32", classes=list(TEXTURES))
    (why,) = ctx.missing(get_probe("shape_bias").needs)
    assert "texture classes" in why and "builtin_label=shape" in why
    assert _ctx("builtin:cue_conflict?size=32", classes=list(SHAPES)).missing(get_probe("shape_bias").needs) == []


def _wordnet_folder(root, counts):
    for wnid, (n, value) in counts.items():
        (root / wnid).mkdir(parents=True)
        for i in range(n):
            Image.fromarray(np.full((40, 40, 3), value, np.uint8)).save(root / wnid / f"{i}.png")
    return root


def test_wordnet_folders_get_the_imagenet_indices_and_the_accuracy_is_right(tmp_path):
    info = ImageNetInfo()
    goldfish, brambling = "n01443537", "n01530575"
    ia, ib = info.label_names().index(goldfish), info.label_names().index(brambling)
    assert (ia, ib) == (1, 10)  # timm's ImageNet-1k order
    root = _wordnet_folder(tmp_path / "val", {goldfish: (3, 0), brambling: (1, 255)})
    ctx = _ctx(str(root), num_classes=1000, bootstrap=Bootstrap(replicates=200))
    with torch.no_grad():  # the head always prefers goldfish, then brambling
        ctx.model.head.weight.zero_()
        ctx.model.head.bias.zero_()
        ctx.model.head.bias[ia], ctx.model.head.bias[ib] = 5.0, 4.0
    assert ctx.label_map().head_index == [ia, ib]
    labels = sorted(torch.cat([y for _, y in ctx.batches()]).tolist())
    assert labels == [ia, ia, ia, ib]
    res = get_probe("accuracy").fn(ctx)
    row = res.table.iloc[0]
    assert row.value == 0.75 and row.ci_low <= 0.75 <= row.ci_high  # 3 goldfish right, 1 brambling wrong
    assert res.meta["label_map"] == "by name" and res.meta["label_indices"] == {goldfish: 1, brambling: 10}
    assert res.meta["label_names"] == "timm imagenet-1k metadata"

    words = _wordnet_folder(tmp_path / "words", {"goldfish": (1, 0), "tench": (1, 0)})  # ImageNet words map too
    assert _ctx(str(words), num_classes=1000).label_map().head_index == [1, 0]
    crane = _wordnet_folder(tmp_path / "crane", {"crane": (1, 0), "tench": (1, 0)})  # the bird or the machine
    (why,) = _ctx(str(crane), num_classes=1000).missing(HEAD)
    assert "crane name several" in why and "WordNet ids" in why


def test_folder_order_only_when_stated_and_recorded(tmp_path):
    root = _wordnet_folder(tmp_path / "ab", {"a": (2, 0), "b": (2, 255)})
    (why,) = _ctx(str(root), num_classes=2).missing(HEAD)  # a head without names
    assert "names no classes" in why and "--labels folder-order" in why and "--param labels=folder-order" in why
    ctx = _ctx(str(root), num_classes=2, labels="folder-order")
    assert ctx.missing(HEAD) == []
    assert sorted(torch.cat([y for _, y in ctx.batches()]).tolist()) == [0, 0, 1, 1]
    res = get_probe("accuracy").fn(ctx)
    assert res.meta["label_map"] == "folder-order (explicit)"
    from maskdistill.report.build import model_rows

    ((_, _, cells),) = model_rows(["tiny"], {}, {"tiny": {"accuracy": res}}, {"tiny": "#000"})
    assert cells["labels"] == "folder-order (explicit)"  # the report's model table says so
    with pytest.raises(ValueError, match="by-name .* or folder-order"):
        _ctx(str(root), num_classes=2, labels="folder")
    three = _wordnet_folder(tmp_path / "abc", {"a": (1, 0), "b": (1, 0), "c": (1, 0)})
    (why,) = [w for w in _ctx(str(three), num_classes=2, labels="folder-order").missing(HEAD) if "folder-order" in w]
    assert "3 classes" in why


def test_cli_param_form_of_the_label_switch():
    from maskdistill.cli.analyze import label_mode
    from maskdistill.errors import UsageError

    assert label_mode("by-name", ["labels=folder-order", "accuracy.batch_size=4"]) == (
        "folder-order",
        ["accuracy.batch_size=4"],
    )
    assert label_mode("folder-order", []) == ("folder-order", [])
    assert label_mode("by-name", []) == ("by-name", [])
    with pytest.raises(UsageError):
        label_mode("folder-order", ["labels=by-name"])
