"""Image folders: layouts and labels, clear errors for missing,
empty and image-less folders, and corrupt files skipped and counted -- up to
``data.max_corrupt_share``, past which the run stops with CorruptDataError."""

from __future__ import annotations

import logging

import pytest

from maskdistill.data.folder import ImageFolder
from maskdistill.data.pipeline import SeededSamples
from maskdistill.data.transforms import pretrain_transform
from maskdistill.train.loop import CorruptDataError
from maskdistill.train.pretrain import pretrain

# ------------------------------------------------------------------ errors


def test_missing_folder_names_the_folder_and_the_fix(tmp_path):
    missing = tmp_path / "nope"
    with pytest.raises(FileNotFoundError) as err:
        ImageFolder(missing)
    assert str(missing) in str(err.value) and "data.path" in str(err.value)


@pytest.mark.parametrize("content", ["empty", "non_images", "empty_class_folders"])
def test_folder_without_images_names_the_folder(tmp_path, content):
    root = tmp_path / "imgs"
    root.mkdir()
    if content == "non_images":
        (root / "notes.txt").write_text("hello")
        (root / "labels.csv").write_text("a,b\n")
        (root / "sub").mkdir()
        (root / "sub" / "readme.md").write_text("# no images here")
    elif content == "empty_class_folders":
        (root / "a").mkdir()
        (root / "b").mkdir()
    with pytest.raises(ValueError) as err:
        ImageFolder(root)
    msg = str(err.value)
    assert str(root) in msg and "no images" in msg and ".png" in msg and "data.path" in msg


def test_an_empty_class_folder_among_others_is_named(tmp_path, pngs):
    root = tmp_path / "imgs"
    pngs(root, n_per_class=2, classes=("a", "b"))
    (root / "c_empty").mkdir()
    with pytest.raises(ValueError, match="c_empty"):
        ImageFolder(root)


def test_data_errors_reach_the_cli_as_clear_messages(tmp_path, tiny_overrides, capsys, restore_logging):
    from maskdistill.cli import main

    root = tmp_path / "imgs"
    root.mkdir()
    (root / "notes.txt").write_text("x")
    rc = main(["pretrain", "demo", *tiny_overrides, f"data.path={root}", "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert rc == 2 and "maskdistill: error:" in err and str(root) in err and "no images" in err


# ------------------------------------------------------------------ layouts


def test_class_folders_get_labels_from_sorted_folder_names(tmp_path, pngs):
    root = tmp_path / "imgs"
    pngs(root, n_per_class=3, classes=("zebra", "ant"))
    nested = root / "ant" / "more"
    pngs(nested, n_per_class=2, classes=("",), seed=1)  # images below a class folder count too
    (root / "ant" / "notes.txt").write_text("not an image")
    ds = ImageFolder(root)
    assert ds.classes == ["ant", "zebra"] and ds.class_to_idx == {"ant": 0, "zebra": 1}
    assert len(ds) == 8
    for path, label in ds.samples:
        assert label == (0 if "/ant/" in str(path) else 1)
    assert ds.targets.count(0) == 5 and ds.targets.count(1) == 3
    img, label = ds[0]
    assert img.mode == "RGB" and img.size == (32, 32) and label == 0
    # The training pipeline passes the labels through.
    samples = SeededSamples(ds, pretrain_transform(16, 0.5, 0.0, 0.5), None, seed=0)
    assert [samples[(i, 0)]["label"] for i in range(len(ds))] == ds.targets


@pytest.mark.parametrize("layout", ["flat", "mixed"])
def test_flat_folders_are_unlabelled(tmp_path, pngs, layout):
    root = tmp_path / "imgs"
    pngs(root, n_per_class=4, classes=("",))
    if layout == "mixed":  # images at the top level make it flat, sub-folders are searched too
        pngs(root / "sub", n_per_class=2, classes=("",), seed=2)
    ds = ImageFolder(root)
    assert ds.classes == [] and len(ds) == (4 if layout == "flat" else 6)
    assert set(ds.targets) == {-1}


# ------------------------------------------------------------------ corrupt files


@pytest.fixture
def folder_with_corrupt_files(png_folder):
    """40 good PNGs + garbage bytes named x.jpg + a truncated PNG = 42 files (neither corrupt file
    is followed by the other in sorted order, so each is skipped exactly once per epoch)."""
    (png_folder / "cats" / "x.jpg").write_bytes(b"this is not a jpeg" * 20)
    good = (png_folder / "dogs" / "img_000.png").read_bytes()
    (png_folder / "dogs" / "zz_truncated.png").write_bytes(good[: len(good) // 2])
    return png_folder


def _cfg(make_cfg, root, share):
    # 42 images, batch 14 -> 3 steps read every file once.
    return make_cfg(
        f"data.path={root}", "train.batch_size=14", f"data.max_corrupt_share={share}", "optim.warmup_epochs=0"
    )


def test_corrupt_files_are_skipped_counted_and_named(tmp_path, make_cfg, folder_with_corrupt_files, caplog):
    root = folder_with_corrupt_files
    with caplog.at_level(logging.WARNING, logger="maskdistill"):
        summary = pretrain(_cfg(make_cfg, root, 0.15), tmp_path / "run")
    assert summary["step"] == 3  # training went on
    assert summary["skipped_images"] == 2
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    for name in ("x.jpg", "zz_truncated.png"):
        hits = [m for m in warned if name in m]
        assert len(hits) == 1, (name, warned)
        assert str(root) in hits[0]


def test_too_many_corrupt_files_stop_the_run(tmp_path, make_cfg, folder_with_corrupt_files, caplog):
    with caplog.at_level(logging.WARNING, logger="maskdistill"):
        with pytest.raises(CorruptDataError) as err:
            pretrain(_cfg(make_cfg, folder_with_corrupt_files, 0.01), tmp_path / "run")
    assert "data.max_corrupt_share=0.01" in str(err.value) and "unreadable" in str(err.value)
    assert any("x.jpg" in r.getMessage() or "zz_truncated.png" in r.getMessage() for r in caplog.records)
