"""Small input checks added after review: each names the problem and the fix."""

import pytest
import torch
from PIL import Image

from maskdistill.config import TeacherConfig
from maskdistill.data.folder import ImageFolder
from maskdistill.models.teacher import build_teacher
from maskdistill.train.optim import decays


def test_teacher_patch_must_divide_the_image():
    with pytest.raises(ValueError, match="not divisible by the teacher's patch size 14"):
        build_teacher(TeacherConfig(spec="timm:vit_small_patch14_dinov2"), 64, 8, pretrained=False)


def test_hidden_files_are_not_images(tmp_path):
    for d in ("a", "b", "a/.ipynb_checkpoints"):
        (tmp_path / d).mkdir(parents=True, exist_ok=True)
    for name in ("a/x.png", "b/y.png", "a/.ipynb_checkpoints/z.png"):
        Image.new("RGB", (8, 8)).save(tmp_path / name)
    (tmp_path / "b" / "._y.png").write_bytes(b"\x00\x05\x16\x07 mac resource fork")
    ds = ImageFolder(tmp_path)
    assert [p.name for p, _ in ds.samples] == ["x.png", "y.png"] and ds.targets == [0, 1]


def test_distillation_token_is_not_decayed():
    assert not decays("dist_token", torch.zeros(1, 1, 8))
    assert decays("blocks.0.attn.qkv.weight", torch.zeros(24, 8))
