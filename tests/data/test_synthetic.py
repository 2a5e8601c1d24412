"""Tests of the built-in shape x texture data (maskdistill.data.synthetic)."""

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image
from torchvision.transforms.functional import pil_to_tensor

from maskdistill.data.synthetic import SHAPES, TEXTURES, ShapesTextures, render, render_with_mask


def _pixels(ds: ShapesTextures, order) -> dict[int, np.ndarray]:
    return {i: np.asarray(ds[i][0]) for i in order}


# ---------------------------------------------------------------- determinism


def test_same_seed_gives_bitwise_equal_pixels_in_any_order():
    n = 30
    forward = _pixels(ShapesTextures(n, seed=3), range(n))
    order = np.random.default_rng(1).permutation(n)
    shuffled = _pixels(ShapesTextures(n, seed=3), order)
    backward = _pixels(ShapesTextures(n, seed=3), range(n - 1, -1, -1))
    for i in range(n):
        assert forward[i].shape == (64, 64, 3) and forward[i].dtype == np.uint8
        np.testing.assert_array_equal(forward[i], shuffled[i])
        np.testing.assert_array_equal(forward[i], backward[i])


def test_item_labels_and_pixels_do_not_depend_on_dataset_length():
    small, large = ShapesTextures(150, seed=5), ShapesTextures(1000, seed=5)
    np.testing.assert_array_equal(small.shape_labels, large.shape_labels[:150])
    np.testing.assert_array_equal(small.texture_labels, large.texture_labels[:150])
    np.testing.assert_array_equal(np.asarray(small[149][0]), np.asarray(large[149][0]))


@pytest.mark.slow
def test_dataloader_with_workers_gives_the_same_pixels():
    ds = ShapesTextures(16, seed=2, transform=pil_to_tensor)

    def batches(workers):
        loader = torch.utils.data.DataLoader(ds, batch_size=4, num_workers=workers)
        xs, ys = zip(*loader)
        return torch.cat(xs), torch.cat(ys)

    x0, y0 = batches(0)
    x2, y2 = batches(2)
    assert x0.shape == (16, 3, 64, 64) and x0.dtype == torch.uint8
    assert torch.equal(x0, x2) and torch.equal(y0, y2)
    assert torch.equal(y0, torch.from_numpy(ds.shape_labels))


def test_different_seed_or_split_gives_different_pixels():
    base = ShapesTextures(8, seed=0, split="train")
    for other in (
        ShapesTextures(8, seed=1, split="train"),
        ShapesTextures(8, seed=0, split="val"),
        ShapesTextures(8, seed=0, split="test"),
    ):
        for i in range(8):
            a, b = np.asarray(base[i][0]), np.asarray(other[i][0])
            assert (a != b).mean() > 0.5  # not a near-copy: fresh colours and geometry
    # and the images within one set differ from each other
    assert not np.array_equal(np.asarray(base[0][0]), np.asarray(base[1][0]))


# ---------------------------------------------------------------- labels


def test_labels_are_balanced_and_independent():
    ds = ShapesTextures(1000, seed=0)
    assert ds.shape_labels.dtype == np.int64 and ds.texture_labels.dtype == np.int64
    np.testing.assert_array_equal(np.bincount(ds.shape_labels, minlength=10), [100] * 10)
    np.testing.assert_array_equal(np.bincount(ds.texture_labels, minlength=10), [100] * 10)
    pairs = np.bincount(ds.shape_labels * 10 + ds.texture_labels, minlength=100)
    np.testing.assert_array_equal(pairs, [10] * 100)
    # order is seeded, not a fixed pattern: consecutive items do not just count up
    assert not np.array_equal(ds.shape_labels[:100], np.arange(100) % 10)
    assert not np.array_equal(ds.shape_labels, ShapesTextures(1000, seed=1).shape_labels)


def test_labels_with_fewer_classes_and_a_partial_block():
    ds = ShapesTextures(61, num_shapes=3, num_textures=4, label="texture")
    assert set(ds.shape_labels.tolist()) == {0, 1, 2}
    assert set(ds.texture_labels.tolist()) == {0, 1, 2, 3}
    pairs = np.bincount(ds.shape_labels * 4 + ds.texture_labels, minlength=12)
    assert pairs.min() == 5 and pairs.max() == 6 and pairs.sum() == 61
    assert ds.classes == list(TEXTURES[:4])
    assert ds.class_to_idx == {name: i for i, name in enumerate(TEXTURES[:4])}
    image, target = ds[7]
    assert isinstance(image, Image.Image) and image.mode == "RGB" and image.size == (64, 64)
    assert target == ds.texture_labels[7] and isinstance(target, int)
    shape_ds = ShapesTextures(61, num_shapes=3, num_textures=4)
    assert shape_ds.classes == ["circle", "square", "triangle"]
    assert shape_ds[7][1] == ds.shape_labels[7]


# ---------------------------------------------------------------- independent cues


def test_texture_changes_pattern_but_not_silhouette():
    for k in range(20):
        shape, tex, other_tex = k % 10, k % 7, (k % 7 + 3) % 10
        img_a, mask_a = render_with_mask(shape, tex, 64, np.random.default_rng(k))
        img_b, mask_b = render_with_mask(shape, other_tex, 64, np.random.default_rng(k))
        np.testing.assert_array_equal(mask_a, mask_b)  # same silhouette, bitwise
        np.testing.assert_array_equal(img_a[~mask_a], img_b[~mask_b])  # same background
        assert (img_a[mask_a] != img_b[mask_b]).any(axis=-1).mean() > 0.1  # other pattern
        _, mask_c = render_with_mask((shape + 1) % 10, tex, 64, np.random.default_rng(k))
        assert (mask_a != mask_c).mean() > 0.02  # another shape: another silhouette
        # the background is one colour plus mild noise; the shape stands out from it
        bg = img_a[~mask_a].astype(np.float32)
        assert bg.std(axis=0).max() < 10
        fg_dist = np.linalg.norm(img_a[mask_a] - bg.mean(axis=0), axis=-1)
        assert np.median(fg_dist) > 60
        assert 0.05 < mask_a.mean() < 0.7


def test_cue_conflict_renders_the_requested_pair_deterministically():
    ds = ShapesTextures(20, seed=4)
    i = 5
    item = np.asarray(ds[i][0])
    same = np.asarray(ds.cue_conflict(int(ds.shape_labels[i]), int(ds.texture_labels[i]), i))
    np.testing.assert_array_equal(item, same)
    ab, ac = np.asarray(ds.cue_conflict(2, 7, i)), np.asarray(ds.cue_conflict(2, 3, i))
    np.testing.assert_array_equal(ab, np.asarray(ds.cue_conflict(2, 7, i)))
    assert not np.array_equal(ab, ac)
    np.testing.assert_array_equal(ab, render(2, 7, 64, ds.item_rng(i)))
    with pytest.raises(ValueError, match="out of range"):
        ds.cue_conflict(10, 0, i)


def _silhouette_feature(mask: np.ndarray) -> np.ndarray:
    ys, xs = np.nonzero(mask)
    crop = mask[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
    crop = Image.fromarray(crop.astype(np.uint8) * 255)
    return np.asarray(crop.resize((16, 16), Image.BILINEAR), np.float32).ravel() / 255


def test_silhouette_carries_shape_and_not_texture():
    # 1-nearest-neighbour on box-normalised silhouettes: a shape class is one outline whatever
    # the texture, and the outline says nothing about the texture (chance is 0.1).
    ds = ShapesTextures(400, seed=0)
    feats = np.stack(
        [
            _silhouette_feature(
                render_with_mask(int(ds.shape_labels[i]), int(ds.texture_labels[i]), 64, ds.item_rng(i))[1]
            )
            for i in range(400)
        ]
    )
    nn_idx = ((feats[300:, None] - feats[None, :300]) ** 2).sum(-1).argmin(1)
    shape_acc = (ds.shape_labels[:300][nn_idx] == ds.shape_labels[300:]).mean()
    texture_acc = (ds.texture_labels[:300][nn_idx] == ds.texture_labels[300:]).mean()
    assert shape_acc >= 0.9, shape_acc  # measured 1.0
    assert texture_acc <= 0.3, texture_acc  # measured 0.16


# ---------------------------------------------------------------- learnability


def _tensors(split: str, n: int):
    ds = ShapesTextures(n, image_size=64, seed=0, split=split)
    x = np.stack([np.asarray(ds[i][0]) for i in range(n)])
    x = torch.from_numpy(x).permute(0, 3, 1, 2).float() / 127.5 - 1.0
    return x, torch.from_numpy(ds.shape_labels), torch.from_numpy(ds.texture_labels)


@pytest.mark.slow
def test_tiny_cnn_learns_shape_and_texture_well_above_chance():
    # A few-second stand-in for "a tiny ViT learns it in CPU minutes": one small CNN trunk with a
    # shape head and a texture head, 2000 train / 500 held-out "val" images, one CPU thread.
    # Measured (8 epochs, ~8 s): shape 0.93, texture 0.80; chance is 0.1 for both.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(0)
        xtr, str_, ttr = _tensors("train", 2000)
        xva, sva, tva = _tensors("val", 500)

        def block(cin, cout, **kw):
            return [nn.Conv2d(cin, cout, **kw), nn.BatchNorm2d(cout), nn.ReLU(), nn.MaxPool2d(2)]

        net = nn.Sequential(
            *block(3, 16, kernel_size=4, stride=2, padding=1),  # 64 -> 16
            *block(16, 32, kernel_size=3, padding=1),  # -> 8
            *block(32, 32, kernel_size=3, padding=1),  # -> 4
            nn.Flatten(),
            nn.Linear(32 * 16, 64),
            nn.ReLU(),
            nn.Linear(64, 20),
        )
        epochs, bs = 8, 64
        opt = torch.optim.Adam(net.parameters(), lr=3e-3)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, 6e-3, total_steps=epochs * -(-2000 // bs))
        for _ in range(epochs):
            for idx in torch.randperm(2000).split(bs):
                out = net(xtr[idx])
                loss = F.cross_entropy(out[:, :10], str_[idx]) + F.cross_entropy(out[:, 10:], ttr[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
                sched.step()
        net.eval()
        with torch.no_grad():
            out = net(xva)
        shape_acc = (out[:, :10].argmax(1) == sva).float().mean().item()
        texture_acc = (out[:, 10:].argmax(1) == tva).float().mean().item()
    finally:
        torch.set_num_threads(threads)
    assert shape_acc >= 0.5, f"shape accuracy {shape_acc:.3f} (chance 0.1)"
    assert texture_acc >= 0.5, f"texture accuracy {texture_acc:.3f} (chance 0.1)"


# ---------------------------------------------------------------- arguments and sizes


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(num_shapes=11), r"num_shapes=11 .*use 1\.\.10"),
        (dict(num_textures=0), r"num_textures=0 .*use 1\.\.10"),
        (dict(label="colour"), r"unknown label 'colour'.*'shape' or 'texture'"),
        (dict(split="training"), r"unknown split 'training'.*\['test', 'train', 'val'\]"),
        (dict(image_size=8), r"image_size=8 is too small.*image_size >= 16"),
        (dict(num_images=0), r"num_images=0"),
        (dict(seed=-1), r"seed=-1"),
    ],
)
def test_invalid_arguments_name_the_problem_and_the_fix(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ShapesTextures(**kwargs)


@pytest.mark.parametrize("size", [16, 37, 96])
def test_other_image_sizes_render_every_pair(size):
    for shape in range(len(SHAPES)):
        for texture in range(len(TEXTURES)):
            img, mask = render_with_mask(shape, texture, size, np.random.default_rng(shape))
            assert img.shape == (size, size, 3) and img.dtype == np.uint8
            assert 0.03 < mask.mean() < 0.75, (SHAPES[shape], size)
