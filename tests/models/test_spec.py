"""The one model-spec parser (``timm:``, ``open_clip:``, ``pixels``, a run directory, ``?options``)
and the loaders that read it: every kind, every option spelling, and a message naming the fix for
every malformed spec."""

from __future__ import annotations

from pathlib import Path

import pytest
from safetensors.torch import save_file

from maskdistill.config import TeacherConfig
from maskdistill.errors import UsageError
from maskdistill.models.classifier import build_classifier_model
from maskdistill.models.spec import ModelSpec, load_model, parse_options, parse_spec
from maskdistill.models.teacher import PixelTeacher, build_teacher


@pytest.mark.parametrize(
    "spec, kind, name, weights",
    [
        ("timm:vit_base_patch16_224", "timm", "vit_base_patch16_224", None),
        ("timm:vit_base_patch16_clip_224.openai", "timm", "vit_base_patch16_clip_224.openai", None),
        ("timm:test_vit@/w/a.safetensors", "timm", "test_vit", "/w/a.safetensors"),
        ("timm:test_vit@~/w@2.pth", "timm", "test_vit", "~/w@2.pth"),  # only the first '@' splits
        ("open_clip:ViT-B-16/laion2b_s34b_b88k", "open_clip", "ViT-B-16", "laion2b_s34b_b88k"),
        ("open_clip:ViT-B-16//ckpt/open_clip.bin", "open_clip", "ViT-B-16", "/ckpt/open_clip.bin"),
        ("open_clip:ViT-B-16", "open_clip", "ViT-B-16", None),
        ("pixels", "pixels", "pixels", None),
        ("runs/md_student", "run", "runs/md_student", None),
        ("/abs/runs/md/checkpoints/step_10", "run", "/abs/runs/md/checkpoints/step_10", None),
        ("  timm:test_vit  ", "timm", "test_vit", None),
    ],
)
def test_every_kind(spec: str, kind: str, name: str, weights: str | None) -> None:
    s = parse_spec(spec)
    assert (s.kind, s.name, s.weights, s.options) == (kind, name, weights, {})
    assert s.base == spec.strip()


def test_options_follow_the_question_mark() -> None:
    s = parse_spec("timm:x@/w/a.safetensors?img_size=224&num_classes=0&pretrained=false")
    assert s == ModelSpec(
        "timm",
        "x",
        "/w/a.safetensors",
        {"img_size": 224, "num_classes": 0, "pretrained": False},
        "timm:x@/w/a.safetensors",
    )
    assert parse_spec("runs/md?pretrained=TRUE").options == {"pretrained": True}
    assert parse_spec("pixels?").options == {}


@pytest.mark.parametrize(
    "query, value",
    [
        ("v=224", 224),
        ("v=0.5", 0.5),
        ("v=(1, 2)", (1, 2)),
        ("v=[3,4]", [3, 4]),
        ("v=True", True),
        ("v=false", False),
        ("v=None", None),
        ("v='avg'", "avg"),
        ("v=avg", "avg"),  # not a literal: kept as the string
        ("v=", ""),
    ],
)
def test_option_values(query: str, value: object) -> None:
    assert parse_options("timm:x", query) == {"v": value}


def test_several_options_and_empty_parts() -> None:
    assert parse_options("timm:x", "a=1&&b=two&") == {"a": 1, "b": "two"}


@pytest.mark.parametrize(
    "spec, match",
    [
        ("", r"empty model spec.*timm:<name>\[@weights file\], hf-hub:<org>/<name>, local-dir:<folder>, .*pixels"),
        ("   ", r"empty model spec"),
        ("?img_size=224", r"empty model spec"),
        ("timm:", r"names no timm model; write e\.g\. timm:vit_base_patch16_224"),
        ("timm:@w.safetensors", r"names no timm model"),
        ("timm:test_vit@", r"'@' but no weights file; drop the '@' or add a path"),
        ("open_clip:", r"names no OpenCLIP model; write e\.g\. open_clip:ViT-B-16/"),
        ("open_clip:/openai", r"names no OpenCLIP model"),
        ("timm:x?img_size", r"option 'img_size' is not key=value \(e\.g\. \?img_size=224\)"),
        ("timm:x?1a=2", r"option '1a=2' is not key=value"),
        ("timm:x?=2", r"option '=2' is not key=value"),
        ("hf:facebook/dinov2-small", r"unknown kind 'hf:'; give timm:<name>"),
        ("tim:vit_base_patch16_224", r"unknown kind 'tim:'"),
    ],
)
def test_malformed_specs_name_the_fix(spec: str, match: str) -> None:
    with pytest.raises(UsageError, match=match):
        parse_spec(spec)


def test_a_run_directory_with_a_colon_is_a_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "md:b16").mkdir()
    assert parse_spec("md:b16").kind == "run"


def test_usage_errors_are_value_errors() -> None:
    # Callers (and tests) that catch ValueError keep working.
    with pytest.raises(ValueError):
        parse_spec("timm:")


def test_load_model_takes_the_spec_options() -> None:
    model, info = load_model("timm:test_vit?pretrained=false&num_classes=0&img_size=96")
    assert model.num_classes == 0 and not model.training
    assert tuple(model.patch_embed.img_size) == (96, 96) and info.kwargs == {"num_classes": 0, "img_size": 96}
    _, info = load_model("timm:test_vit?num_classes=3", pretrained=False, num_classes=5)  # the spec wins
    assert info.num_classes == 3


def test_load_model_with_local_weights(tmp_path: Path) -> None:
    src, _ = load_model("timm:test_vit", pretrained=False)
    f = tmp_path / "w.safetensors"
    save_file({k: v.contiguous() for k, v in src.state_dict().items()}, str(f))
    model, info = load_model(f"timm:test_vit@{f}")  # a weights file: nothing is downloaded
    assert info.arch == "test_vit" and info.spec == f"timm:test_vit@{f}"
    assert all((a == b).all() for a, b in zip(model.state_dict().values(), src.state_dict().values()))


@pytest.mark.parametrize("spec, match", [("open_clip:ViT-B-16/openai", "teachers only"), ("pixels", "teacher only")])
def test_load_model_refuses_teacher_only_specs(spec: str, match: str) -> None:
    with pytest.raises(UsageError, match=match):
        load_model(spec, pretrained=False)


def test_teacher_specs_take_no_options() -> None:
    with pytest.raises(UsageError, match=r"teacher\.spec takes no \?options .*timm:test_vit\?"):
        build_teacher(TeacherConfig(spec="timm:test_vit?img_size=224"), 64, 16, pretrained=False)
    with pytest.raises(UsageError, match="names no timm model"):
        build_teacher(TeacherConfig(spec="timm:"), 64, 16, pretrained=False)


def test_pixels_teacher_from_its_spec() -> None:
    t = build_teacher(TeacherConfig(spec="pixels"), 64, 16, pretrained=False)
    assert isinstance(t, PixelTeacher) and t.dim == 16 * 16 * 3


@pytest.mark.parametrize(
    "spec, match",
    [
        (
            "pixels",
            r"starts from timm:<name>\[@weights file\], hf-hub:.* run or checkpoint directory; pixels specs are",
        ),
        ("open_clip:ViT-B-16/openai", "open_clip specs are teachers only"),
        ("timm:test_vit?img_size=64", r"model\.spec of a fine-tune takes no \?options"),
        ("timm:test_vit@", "no weights file"),
    ],
)
def test_classifier_start_refuses_what_it_cannot_start_from(spec: str, match: str) -> None:
    with pytest.raises(UsageError, match=match):
        build_classifier_model(spec, 10, 64)
