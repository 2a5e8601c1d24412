"""Verified checkpoints: a damaged newest checkpoint (truncated, garbled, bytes flipped in place,
bad JSON, ``latest`` naming a folder that is gone) is named with what failed, resume falls back to
the previous checkpoint and ends with the same losses as an undamaged run; with no checkpoint left
that verifies, the error lists every one tried."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest

from maskdistill.cli import main
from maskdistill.runs.checkpoint import find_checkpoint
from maskdistill.runs.metrics import read_metrics
from maskdistill.runs.verify import CheckpointError, checkpoint_problem, is_verified, newest_verified
from maskdistill.train.pretrain import pretrain

COMMON = ("train.ckpt_every=2", "train.keep_last=3")


def _truncate(ck: Path) -> Path:
    p = ck / "model.safetensors"
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])
    return p


def _garble(ck: Path) -> Path:
    p = ck / "optimizer.safetensors"
    data = bytearray(p.read_bytes())
    data[8:40] = b"\xff" * 32  # inside the JSON header
    p.write_bytes(bytes(data))
    return p


def _flip(ck: Path) -> Path:
    """NaN bit patterns written over weights: same size, a header that parses, loads without a word."""
    p = ck / "model.safetensors"
    data = bytearray(p.read_bytes())
    data[-64:] = b"\xff\xff\xc0\x7f" * 16
    p.write_bytes(bytes(data))
    return p


def _bad_json(ck: Path) -> Path:
    p = ck / "meta.json"
    p.write_text('{"step": 4,\x01 "kind"')
    return p


def _dangling_latest(ck: Path) -> Path:
    shutil.rmtree(ck)  # latest still names it
    return ck.parent / "latest"


DAMAGES = {"truncated": _truncate, "garbled": _garble, "flipped": _flip, "bad_json": _bad_json}


@pytest.fixture(scope="module")
def undamaged(tmp_path_factory):
    from conftest import TINY
    from maskdistill.config import load_config

    out = tmp_path_factory.mktemp("undamaged") / "run"
    pretrain(load_config("demo", TINY + list(COMMON)), out)
    return out


def _losses(run: Path):
    return [(r["step"], r["loss"], r["lr"]) for r in read_metrics(run / "metrics.csv")]


@pytest.mark.parametrize("damage", [*DAMAGES, "dangling_latest"])
def test_resume_falls_back_to_the_previous_checkpoint(tmp_path, make_cfg, undamaged, damage, caplog):
    run = tmp_path / "run"
    pretrain(make_cfg(*COMMON, "train.max_steps=4"), run)
    newest = run / "checkpoints" / "step_00000004"
    assert is_verified(newest) and is_verified(run / "checkpoints" / "step_00000002")
    damaged = (DAMAGES.get(damage) or _dangling_latest)(newest)
    assert checkpoint_problem(newest) is not None or damage == "dangling_latest"
    with caplog.at_level(logging.WARNING):
        summary = pretrain(make_cfg(*COMMON), run, resume=True)
    warned = "\n".join(r.getMessage() for r in caplog.records)
    assert str(damaged) in warned, warned  # the damaged file is named
    assert summary["steps_run"] == 4 and summary["step"] == 6  # resumed from step 2
    got, want = _losses(run), _losses(undamaged)
    assert [r[0] for r in got] == [r[0] for r in want] == [1, 2, 3, 4, 5, 6]
    assert [r[2] for r in got] == [r[2] for r in want]
    assert [r[1] for r in got] == pytest.approx([r[1] for r in want], abs=1e-7)
    assert find_checkpoint(run).name == "step_00000006"
    if damage != "dangling_latest":  # kept for inspection, out of the way
        assert (run / "checkpoints" / "damaged_step_00000004").is_dir()


def test_the_cli_resumes_from_the_previous_checkpoint_and_says_so(tmp_path, tiny_overrides, capsys, restore_logging):
    run = tmp_path / "run"
    argv = ["pretrain", "demo", *tiny_overrides, *COMMON]
    assert main([*argv, "train.max_steps=4", "--out", str(run)]) == 0
    _flip(run / "checkpoints" / "step_00000004")
    assert main([*argv, "--out", str(run), "--resume"]) == 0
    err = capsys.readouterr().err
    assert "step_00000004 is damaged" in err and "does not match its recorded SHA-256" in err
    assert "resumed from" in err and "step_00000002 at step 2" in err


def test_with_no_checkpoint_left_the_error_lists_what_was_tried(tmp_path, make_cfg, tiny_overrides, capsys):
    run = tmp_path / "run"
    pretrain(make_cfg(*COMMON, "train.max_steps=4"), run)
    a = _truncate(run / "checkpoints" / "step_00000004")
    b = _bad_json(run / "checkpoints" / "step_00000002")
    assert newest_verified(run) is None
    with pytest.raises(CheckpointError) as err:
        pretrain(make_cfg(*COMMON), run, resume=True)
    msg = str(err.value)
    assert str(a) in msg and str(b) in msg and msg.count("were written (truncated or replaced)") == 2
    assert "--overwrite" in msg
    # A checkpoint folder named directly is verified too (e.g. as a teacher or fine-tuning start).
    with pytest.raises(CheckpointError, match="is damaged"):
        find_checkpoint(run / "checkpoints" / "step_00000004")
