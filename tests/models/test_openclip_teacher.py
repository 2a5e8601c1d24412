"""open_clip:<arch>/<tag> teachers: OpenCLIP's image tower moved into timm's CLIP ViT layout must
compute exactly what OpenCLIP computes (random weights, nothing downloaded)."""

import pytest
import torch

open_clip = pytest.importorskip("open_clip")

from maskdistill.config import TeacherConfig  # noqa: E402
from maskdistill.models.openclip import load_openclip_tower, openclip_to_timm  # noqa: E402
from maskdistill.models.teacher import Teacher, build_teacher  # noqa: E402


@pytest.fixture(scope="module")
def pair():
    torch.manual_seed(0)
    oc = open_clip.create_model("ViT-B-16", pretrained=None).eval()
    tm, pre = openclip_to_timm(oc, "ViT-B-16", 224)
    return oc, tm.eval(), pre


def test_converted_tower_matches_openclip(pair):
    oc, tm, pre = pair
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        emb_oc, emb_tm = oc.encode_image(x), tm(x)  # (B, 512): ln_post + proj on CLS
        inter = oc.visual.forward_intermediates(
            x, indices=[5], intermediates_only=True, output_fmt="NLC", output_extra_tokens=True
        )["image_intermediates"][0]  # (B, 196, 768)
    assert torch.allclose(emb_oc, emb_tm, atol=1e-4), (emb_oc - emb_tm).abs().max()
    teacher = Teacher(tm, pre["mean"], pre["std"], layer=5, final_norm=False)
    mean, std = torch.tensor(pre["mean"]).view(1, 3, 1, 1), torch.tensor(pre["std"]).view(1, 3, 1, 1)
    tokens = teacher(x * std + mean)  # the teacher normalises [0, 1] images with CLIP's mean/std itself
    assert tokens.shape == (2, 196, 768)
    assert torch.allclose(tokens, inter, atol=1e-4), (tokens - inter).abs().max()


def test_projection_option_gives_512d_tokens(pair):
    _, tm, pre = pair
    teacher = Teacher(tm, pre["mean"], pre["std"], projection=True, prefix_tokens=True)
    x = torch.rand(1, 3, 224, 224)
    with torch.no_grad():
        tokens = teacher(x)
        cls = tm((x - teacher.mean) / teacher.std)  # timm CLIP: proj(ln_post(CLS))
    assert teacher.dim == 512 and tokens.shape == (1, 197, 512)
    assert torch.allclose(tokens[:, 0], cls, atol=1e-4)


def test_build_teacher_from_spec_without_download():
    t = build_teacher(TeacherConfig(spec="open_clip:ViT-B-16/openai"), 224, 16, pretrained=False)
    assert t.dim == 768 and t.grid == (14, 14) and not t.training
    assert all(not p.requires_grad for p in t.parameters())


def test_tower_without_weights_has_openclip_normalisation():
    tower, mean, std = load_openclip_tower("ViT-S-32", "/no/such/file.bin", 64, pretrained=False)  # tag not read
    assert not tower.training and tower.embed_dim == 384 and tuple(tower.patch_embed.grid_size) == (2, 2)
    assert mean == pytest.approx((0.48145466, 0.4578275, 0.40821073)) and len(std) == 3


def test_local_checkpoint_as_tag_loads_its_weights(tmp_path):
    torch.manual_seed(1)
    oc = open_clip.create_model("ViT-S-32", pretrained=None).eval()
    f = tmp_path / "vit_s_32.bin"
    torch.save(oc.state_dict(), f)
    expected, _ = openclip_to_timm(oc, "ViT-S-32", 64)
    t = build_teacher(TeacherConfig(spec=f"open_clip:ViT-S-32/{f}", projection=True), 64, 32)
    assert isinstance(t, Teacher) and t.name == f"open_clip:ViT-S-32/{f}" and t.dim == 384
    got = t.backbone.state_dict()
    assert all(torch.equal(got[k], v) for k, v in expected.state_dict().items())


def test_missing_checkpoint_names_the_local_file_form(tmp_path):
    with pytest.raises(RuntimeError, match=r"open_clip:ViT-S-32//path/to/file\.bin"):
        load_openclip_tower("ViT-S-32", str(tmp_path / "missing.bin"), 64)
