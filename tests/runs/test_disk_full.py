"""A checkpoint write into a file system that fills up: one ``maskdistill: stopped:`` line naming the
file, what is kept and the fix (exit 1, no traceback), no temporary folder left, and the previous
checkpoint verified and resumable. Needs a small tmpfs, so it runs as root only."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from maskdistill.cli import main
from maskdistill.runs.checkpoint import find_checkpoint
from maskdistill.runs.verify import is_verified
from maskdistill.train.pretrain import pretrain


@pytest.fixture
def small_fs(tmp_path):
    mnt = tmp_path / "small"
    mnt.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    # One tiny checkpoint is ~0.6 MB: the first fits, the second does not (the first is kept).
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1100k", "tmpfs", str(mnt)], capture_output=True)
    if done.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    yield mnt
    subprocess.run(["umount", str(mnt)], check=False)


def test_a_full_disk_during_a_checkpoint_write_is_one_line_and_keeps_the_previous(
    small_fs, tmp_path, tiny_overrides, make_cfg, capsys, restore_logging
):
    run = small_fs / "run"
    argv = ["pretrain", "demo", *tiny_overrides, "train.ckpt_every=2", "train.keep_last=1", "--out", str(run)]
    rc = main(argv)
    err = capsys.readouterr().err
    assert rc == 1, err
    assert "Traceback" not in err
    (line,) = [x for x in err.splitlines() if x.startswith("maskdistill:")]
    assert line.startswith("maskdistill: stopped: could not write checkpoint step_00000004: no space left on device")
    assert str(run / "checkpoints" / ".tmp_step_00000004") in line  # the file being written
    kept = run / "checkpoints" / "step_00000002"
    assert f"Kept: {kept} (resumable)" in line and "--resume" in line and "free space" in line.lower()
    assert not list((run / "checkpoints").glob(".tmp_*"))
    assert find_checkpoint(run) == kept and is_verified(kept)

    # Moved to a disk with room, the run resumes from the kept checkpoint.
    moved = tmp_path / "moved"
    shutil.copytree(run, moved)
    summary = pretrain(make_cfg("train.ckpt_every=2", "train.keep_last=1"), moved, resume=True)
    assert summary["steps_run"] == 4 and summary["step"] == 6
