"""Bad input: every error names the problem and the fix. Weights load without
executing pickled code."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import timm
import torch
from safetensors.torch import save_file

from maskdistill.cli import main as cli_main
from maskdistill.config import DecoderConfig, StudentConfig, TeacherConfig
from maskdistill.distill.parts import build_decoder
from maskdistill.models.loading import WeightsError, check_timm_name, read_state_dict
from maskdistill.models.student import build_student
from maskdistill.models.teacher import build_teacher

TINY = dict(patch_size=8, embed_dim=32, depth=2, num_heads=2)


def test_image_size_not_divisible_by_patch_size() -> None:
    with pytest.raises(ValueError) as e:
        build_student(StudentConfig(kwargs=TINY), 36)
    msg = str(e.value)
    assert "36" in msg and "not divisible" in msg and "patch size 8" in msg
    assert "data.img_size=32 or 40" in msg  # the fix
    build_student(StudentConfig(kwargs=TINY), 40)  # a size that divides works


def test_image_size_error_reaches_the_command_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    rc = cli_main(
        ["pretrain", "demo", "data.img_size=36", "student.kwargs.depth=1", "--out", str(tmp_path / "r"), "--dry-run"]
    )
    err = capsys.readouterr().err
    assert rc == 2 and "not divisible" in err and "patch size 8" in err and "36" in err
    assert not (tmp_path / "r").exists()  # nothing written


def test_unknown_teacher_name_suggests_close_names() -> None:
    with pytest.raises(ValueError) as e:
        build_teacher(TeacherConfig(spec="timm:vit_bse_patch16_224"), 224, 16, pretrained=False)
    msg = str(e.value)
    assert "vit_bse_patch16_224" in msg and "no model" in msg
    assert "vit_base_patch16_224" in msg.split("Close names:")[1]
    with pytest.raises(ValueError, match="Close names: .*vit_base_patch16_clip_224"):
        check_timm_name("vit_base_patch16_clip_24.openai")
    check_timm_name("vit_base_patch16_clip_224.openai")  # a tag on a known name is fine


def test_weights_of_another_architecture_list_missing_and_unexpected_keys(tmp_path: Path) -> None:
    f = tmp_path / "other.safetensors"
    save_file({k: v.contiguous() for k, v in timm.create_model("test_vit2").state_dict().items()}, str(f))
    with pytest.raises(WeightsError) as e:
        build_teacher(TeacherConfig(spec=f"timm:test_vit@{f}"), 160, 16)
    msg = str(e.value)
    assert str(f) in msg and "do not fit" in msg
    assert "missing keys" in msg and "cls_token" in msg  # test_vit has a CLS token, test_vit2 none
    assert "unexpected keys" in msg and "ls1.gamma" in msg  # test_vit2 has layer scale, test_vit none
    assert "same architecture" in msg  # the fix


def test_weights_with_other_shapes_list_the_mismatches(tmp_path: Path) -> None:
    f = tmp_path / "wide.safetensors"
    sd = timm.create_model("test_vit").state_dict()
    sd["blocks.1.mlp.fc1.weight"] = torch.zeros(10, 64)
    save_file(sd, str(f))
    with pytest.raises(WeightsError) as e:
        build_teacher(TeacherConfig(spec=f"timm:test_vit@{f}"), 160, 16)
    msg = str(e.value)
    assert "shape mismatches (1): blocks.1.mlp.fc1.weight: file (10, 64) vs model (192, 64)" in msg
    assert "missing keys" not in msg and "unexpected keys" not in msg


def test_matching_local_weights_load_exactly(tmp_path: Path) -> None:
    torch.manual_seed(0)
    src = timm.create_model("test_vit").eval()
    f = tmp_path / "test_vit.safetensors"
    save_file(src.state_dict(), str(f))  # includes the classifier head, which the teacher drops
    t = build_teacher(TeacherConfig(spec=f"timm:test_vit@{f}", prefix_tokens=True), 160, 16)
    mean, std = (
        torch.tensor(src.pretrained_cfg["mean"]).view(1, 3, 1, 1),
        torch.tensor(src.pretrained_cfg["std"]).view(1, 3, 1, 1),
    )
    x = torch.rand(1, 3, 160, 160)
    with torch.no_grad():
        ref = src.forward_features((x - mean) / std)
    assert torch.allclose(t(x), ref, atol=1e-5)


class _RunsCodeWhenUnpickled:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def test_pickled_object_in_pth_is_refused_without_running_it(tmp_path: Path) -> None:
    marker = tmp_path / "pickle-ran"
    f = tmp_path / "evil.pth"
    torch.save({"model": {"w": torch.zeros(1)}, "payload": _RunsCodeWhenUnpickled(str(marker))}, str(f))
    with pytest.raises(WeightsError) as e:
        build_teacher(TeacherConfig(spec=f"timm:test_vit@{f}"), 160, 16)
    msg = str(e.value)
    assert str(f) in msg and "weights-only" in msg and "safetensors" in msg
    assert not marker.exists(), "unpickling executed code"
    # The same file loaded the unsafe way would have run it: the test's payload is real.
    torch.load(str(f), weights_only=False)
    assert marker.exists()


def test_pth_without_tensors_is_refused(tmp_path: Path) -> None:
    f = tmp_path / "notes.pth"
    torch.save({"epoch": 3, "note": "hello"}, str(f))
    with pytest.raises(WeightsError, match="does not hold a state dict of tensors"):
        read_state_dict(f)
    g = tmp_path / "wrapped.pth"
    torch.save({"model": {"w": torch.ones(2)}, "epoch": 3}, str(g))
    assert torch.equal(read_state_dict(g)["w"], torch.ones(2))  # the common {"model": sd} wrapper


def test_missing_and_corrupt_weights_files(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist.*safetensors"):
        read_state_dict(tmp_path / "nope.safetensors")
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x00garbage" * 10)
    with pytest.raises(WeightsError, match="cannot read .*bad.safetensors"):
        read_state_dict(bad)


@pytest.mark.parametrize("layer", [6, -7, 100])
def test_teacher_layer_out_of_range(layer: int) -> None:
    with pytest.raises(ValueError) as e:
        build_teacher(TeacherConfig(spec="timm:test_vit", layer=layer), 160, 16, pretrained=False)
    msg = str(e.value)
    assert f"teacher.layer={layer}" in msg and "out of range" in msg and "6 blocks" in msg
    assert "0..5" in msg and "-1" in msg  # the fix


def test_decoder_heads_must_divide_the_width() -> None:
    with pytest.raises(ValueError) as e:
        build_decoder(DecoderConfig(kind="transformer", num_heads=5), 32, 16, 2)
    msg = str(e.value)
    assert "num_heads=5" in msg and "does not divide" in msg and "32" in msg
    assert "set decoder.num_heads" in msg  # the fix
    with pytest.raises(ValueError, match="does not divide"):
        build_decoder(DecoderConfig(kind="transformer", num_heads=0), 30, 16, 4)  # the student's 4 heads


def test_vit_student_without_absolute_position_embedding() -> None:
    cfg = StudentConfig(arch="vit_small_patch16_224", rel_pos_bias="none", abs_pos_emb=False, kwargs=TINY)
    with pytest.raises(ValueError) as e:
        build_student(cfg, 32)
    msg = str(e.value)
    assert "no position information" in msg and "student.abs_pos_emb=true" in msg and "beit" in msg


@pytest.mark.parametrize("rel", ["shared", "per_block"])
def test_relative_position_bias_on_a_vit_student(rel: str) -> None:
    cfg = StudentConfig(arch="vit_small_patch16_224", rel_pos_bias=rel, abs_pos_emb=True, kwargs=TINY)
    with pytest.raises(ValueError) as e:
        build_student(cfg, 32)
    msg = str(e.value)
    assert f"student.rel_pos_bias='{rel}'" in msg and "BEiT-family" in msg and "student.rel_pos_bias=none" in msg


def test_unknown_student_arch_suggests_close_names() -> None:
    with pytest.raises(ValueError, match="Close names: .*beit_base_patch16_224"):
        build_student(StudentConfig(arch="beit_bsae_patch16_224", kwargs=TINY), 32)
