"""Real-data checks: MNIST test set + the trained ViT4MNIST mapped onto timm.

Every test that needs the shared data skips (via ``realdata.require``) when it is absent.
"""

from __future__ import annotations

import gzip
import pathlib
import struct

import pytest
import torch
import torch.nn.functional as F

from helpers import realdata

FIRST_TEST_LABELS = [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]


@pytest.fixture(scope="module")
def raw_weights() -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(realdata.require(realdata.VIT4MNIST)))


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    return realdata.load_vit4mnist()


@pytest.fixture(scope="module")
def mnist2k() -> tuple[torch.Tensor, torch.Tensor]:
    return realdata.load_mnist_test(2000)


# --------------------------------------------------------------------------- reference
def _ref_tokens(raw: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """Original ViT4MNIST embedding: 7x7 patches flattened (p1 p2), Linear, cls, + pos."""
    b = x.shape[0]
    patches = x.reshape(b, 1, 4, 7, 4, 7).permute(0, 2, 4, 3, 5, 1).reshape(b, 16, 49)
    tokens = patches @ raw["patch.weight"].T + raw["patch.bias"]
    return torch.cat([raw["cls"].expand(b, -1, -1), tokens], dim=1) + raw["pos"]


def _ref_attention(raw: dict[str, torch.Tensor], i: int, t: torch.Tensor) -> torch.Tensor:
    """Original attention of block ``i`` on pre-norm input ``t``: softmax(q k^T * 0.125) v, proj."""
    p = f"blocks.{i}."
    h = F.layer_norm(t, (64,), raw[p + "ln1.weight"], raw[p + "ln1.bias"], eps=1e-5)
    b, n, _ = h.shape
    q, k, v = (h @ raw[p + "qkv.weight"].T).reshape(b, n, 3, 8, 8).permute(2, 0, 3, 1, 4)
    attn = (q @ k.transpose(-2, -1) * 0.125).softmax(dim=-1)
    out = (attn @ v).transpose(1, 2).reshape(b, n, 64)
    return out @ raw[p + "proj.weight"].T + raw[p + "proj.bias"]


def _ref_forward(raw: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """The whole original network, written directly from the README's description."""
    t = _ref_tokens(raw, x)
    for i in range(6):
        p = f"blocks.{i}."
        t = t + _ref_attention(raw, i, t)
        h = F.layer_norm(t, (64,), raw[p + "ln2.weight"], raw[p + "ln2.bias"], eps=1e-5)
        h = F.gelu(h @ raw[p + "fc1.weight"].T + raw[p + "fc1.bias"])
        t = t + h @ raw[p + "fc2.weight"].T + raw[p + "fc2.bias"]
    c = F.gelu(t[:, 0] @ raw["head1.weight"].T + raw["head1.bias"])  # no final norm
    return c @ raw["head2.weight"].T + raw["head2.bias"]


# --------------------------------------------------------------------------- MNIST
def test_mnist_shapes_dtypes_and_first_labels() -> None:
    images, labels = realdata.load_mnist_test(16)
    assert images.shape == (16, 1, 28, 28) and images.dtype == torch.uint8
    assert labels.shape == (16,) and labels.dtype == torch.int64
    assert labels[:10].tolist() == FIRST_TEST_LABELS
    assert int(images.max()) == 255 and int(images.min()) == 0
    full_images, full_labels = realdata.load_mnist_test()
    assert full_images.shape == (10000, 1, 28, 28) and full_labels.shape == (10000,)
    assert torch.equal(full_images[:16], images)
    assert torch.bincount(full_labels, minlength=10).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    x = realdata.normalize(images)
    assert x.dtype == torch.float32 and x.shape == images.shape
    assert x.min().item() == pytest.approx(-realdata.MNIST_MEAN / realdata.MNIST_STD)


def test_idx_parser_rejects_bad_files(tmp_path: pathlib.Path) -> None:
    good = tmp_path / "good.gz"
    good.write_bytes(gzip.compress(struct.pack(">HBBII", 0, 8, 2, 2, 3) + bytes(range(6))))
    assert realdata._read_idx_ubyte(good).tolist() == [[0, 1, 2], [3, 4, 5]]
    short = tmp_path / "short.gz"
    short.write_bytes(gzip.compress(struct.pack(">HBBII", 0, 8, 2, 2, 3) + bytes(5)))
    with pytest.raises(ValueError, match="payload"):
        realdata._read_idx_ubyte(short)
    floats = tmp_path / "floats.gz"
    floats.write_bytes(gzip.compress(struct.pack(">HBBI", 0, 0x0D, 1, 1) + bytes(4)))
    with pytest.raises(ValueError, match="unsigned-byte"):
        realdata._read_idx_ubyte(floats)


# --------------------------------------------------------------------------- ViT4MNIST
def test_vit4mnist_structure(model: torch.nn.Module, raw_weights: dict[str, torch.Tensor]) -> None:
    assert not model.training
    assert isinstance(model.norm, torch.nn.Identity)
    assert sum(p.numel() for p in model.parameters()) == 213642
    assert sum(v.numel() for v in raw_weights.values()) == 213642
    assert all(b.norm1.eps == 1e-5 and b.norm2.eps == 1e-5 for b in model.blocks)


@torch.inference_mode()
def test_vit4mnist_accuracy_first_2000(model: torch.nn.Module, mnist2k: tuple[torch.Tensor, torch.Tensor]) -> None:
    images, labels = mnist2k
    preds = torch.cat([model(realdata.normalize(chunk)).argmax(1) for chunk in images.split(500)])
    acc = (preds == labels).float().mean().item()
    # Measured 0.9695 (1939/2000) here; 0.9791 on all 10,000 (README: 97.9 %). The first
    # 2000 are slightly harder than the average, so the bar is 0.965, not 0.97.
    assert acc >= 0.965, f"top-1 on the first 2000 MNIST test images: {acc:.4f}"


@torch.inference_mode()
def test_vit4mnist_matches_original_forward(
    model: torch.nn.Module, raw_weights: dict[str, torch.Tensor], mnist2k: tuple[torch.Tensor, torch.Tensor]
) -> None:
    x = realdata.normalize(mnist2k[0][:64])
    ref = _ref_forward(raw_weights, x)
    torch.testing.assert_close(model(x), ref, atol=1e-4, rtol=1e-4)


@torch.inference_mode()
def test_block0_attention_uses_original_scale(
    raw_weights: dict[str, torch.Tensor], model: torch.nn.Module, mnist2k: tuple[torch.Tensor, torch.Tensor]
) -> None:
    """timm's block-0 attention on the mapped weights == softmax(q k^T * 0.125) on the raw ones;
    without the q-row scaling (negative control) it differs clearly."""
    x = realdata.normalize(mnist2k[0][:1])
    t = _ref_tokens(raw_weights, x)
    torch.testing.assert_close(model._pos_embed(model.patch_embed(x)), t, atol=1e-5, rtol=1e-5)
    ref = _ref_attention(raw_weights, 0, t)
    block = model.blocks[0]
    torch.testing.assert_close(block.attn(block.norm1(t)), ref, atol=1e-5, rtol=1e-5)

    unscaled = realdata.build_vit4mnist().eval()
    unscaled.load_state_dict(realdata.vit4mnist_to_timm(raw_weights, scale_q=False), strict=True)
    ublock = unscaled.blocks[0]
    assert (ublock.attn(ublock.norm1(t)) - ref).abs().max().item() > 1e-2


def test_unmapped_key_is_an_error(raw_weights: dict[str, torch.Tensor]) -> None:
    with pytest.raises(KeyError, match="extra"):
        realdata.vit4mnist_to_timm({**raw_weights, "extra": torch.zeros(1)})


# --------------------------------------------------------------------------- skipping
def test_missing_shared_dir_skips(monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path) -> None:
    monkeypatch.setenv(realdata.ENV_VAR, str(tmp_path))  # no data/ inside
    assert realdata.shared_data_dir() is None
    with pytest.raises(pytest.skip.Exception, match="t10k-images-idx3-ubyte.gz"):
        realdata.require(realdata.MNIST_IMAGES)
    with pytest.raises(pytest.skip.Exception, match="vit4mnist.safetensors"):
        realdata.load_vit4mnist()


def test_missing_file_skips(monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path) -> None:
    (tmp_path / "data" / "mnist").mkdir(parents=True)
    monkeypatch.setenv(realdata.ENV_VAR, str(tmp_path))
    assert realdata.shared_data_dir() == (tmp_path / "data").resolve()
    with pytest.raises(pytest.skip.Exception, match="t10k-images-idx3-ubyte.gz"):
        realdata.load_mnist_test(10)


def test_default_location(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(realdata.ENV_VAR, raising=False)
    expected = realdata.PROJECT_ROOT.parent / "shared" / "data"
    found = realdata.shared_data_dir()
    assert found == (expected.resolve() if expected.is_dir() else None)
