"""timm's own model names as model specs: ``hf-hub:<org>/<name>[@revision]`` and ``local-dir:<folder>``
parse as timm specs whose whole name goes to ``timm.create_model``; a folder written by ``maskdistill
export`` is a teacher, an analysed model (with its real architecture and label names) and the start
of a fine-tune, equal to the run it came from; a folder without ``config.json`` names the fix."""

from __future__ import annotations

import pytest
import torch

from maskdistill.config import TeacherConfig, load_config
from maskdistill.config.spec_forms import NETWORK_FORMS, SPEC_FORMS
from maskdistill.errors import UsageError
from maskdistill.hub import export_run
from maskdistill.models.spec import load_model, parse_spec
from maskdistill.models.teacher import build_teacher
from maskdistill.train.classify import ClassifyConfig, train_classifier


@pytest.mark.parametrize(
    "spec, name, options",
    [
        ("hf-hub:timm/vit_small_patch16_224.augreg_in21k", "hf-hub:timm/vit_small_patch16_224.augreg_in21k", {}),
        ("hf-hub:org/md-vit@v1.0", "hf-hub:org/md-vit@v1.0", {}),  # '@' is a hub revision, not a file
        ("local-dir:/models/md-vit?num_classes=0", "local-dir:/models/md-vit", {"num_classes": 0}),
        (" local-dir:~/a.b/c ", "local-dir:~/a.b/c", {}),
    ],
)
def test_hub_names_are_timm_specs(spec, name, options):
    s = parse_spec(spec)
    assert (s.kind, s.name, s.weights, s.options) == ("timm", name, None, options)


def test_the_forms_are_listed_once_everywhere():
    for form in ("hf-hub:<org>/<name>", "local-dir:<folder>", "timm:<name>[@weights file]", "pixels"):
        assert form in SPEC_FORMS
    assert "pixels" not in " ".join(NETWORK_FORMS)
    with pytest.raises(UsageError, match="names no model; write hf-hub:<org>/<name> or local-dir:<folder>"):
        parse_spec("local-dir:")
    with pytest.raises(UsageError, match="hf-hub:<org>/<name>, local-dir:<folder>"):
        parse_spec("hf_hub:org/x")  # a misspelt scheme lists the forms


def test_local_dir_without_config_names_the_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match="holds no config.json; give a folder written by `maskdistill export`"):
        load_model(f"local-dir:{tmp_path}")


@pytest.fixture(scope="module")
def classifier_run(tmp_path_factory):
    """A tiny supervised classifier (its run folder, its export)."""
    from conftest import TINY

    base = tmp_path_factory.mktemp("cls")
    data = [o for o in TINY if o.startswith(("data.", "train."))]
    kw = "{patch_size: 8, embed_dim: 32, depth: 2, num_heads: 2}"
    cfg = load_config(
        "demo_teacher", [*data, f"model.kwargs={kw}", "train.max_steps=2"], schema=ClassifyConfig, kind="classify"
    )
    train_classifier(cfg, base / "run")
    return base / "run", export_run(base / "run", base / "hub")


def test_an_exported_classifier_is_an_analysed_model_and_a_teacher(classifier_run):
    run, folder = classifier_run
    model, info = load_model(f"local-dir:{folder}")
    ref, ref_info = load_model(str(run))
    assert info.arch == ref_info.arch == "vit_small_patch16_224" and info.classes == ref_info.classes
    assert (info.mean, info.std, info.img_size, info.num_classes) == (ref_info.mean, ref_info.std, 32, 10)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(x), ref(x))
    # As the teacher T: the folder's own mean/std normalise the images, the tokens equal the run's.
    t_hub = build_teacher(TeacherConfig(spec=f"local-dir:{folder}"), 32, 8).eval()
    t_run = build_teacher(TeacherConfig(spec=str(run)), 32, 8).eval()
    images = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        tokens = t_hub(images)
        assert tokens.shape == (2, 16, 32) and torch.equal(tokens, t_run(images))
