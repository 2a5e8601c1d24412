"""The exit codes of a signal and of a file-system failure: a graceful stop exits 75 (resumable), a
non-resumable stop 128 + the signal, a bare Ctrl-C 130, all with one ``maskdistill: interrupted:``
line; a full disk or quota exits 1 and a read-only or forbidden folder 2, in words, naming the file
-- also when the failure comes as safetensors' own error, whose OS error code is only in its text."""

from __future__ import annotations

import errno
import os
import signal
import subprocess

import pytest

from maskdistill.cli import main
from maskdistill.cli.failures import classify_failure
from maskdistill.errors import RESUMABLE, Interrupted
from maskdistill.runs.disk import disk_errno, disk_reason


class SafetensorError(Exception):
    """Stands in for safetensors' error type (matched by name, as the library's own is)."""


def test_signal_exit_codes():
    assert classify_failure(Interrupted("SIGTERM received: stopped after step 3", 15, resumable=True)) == (
        RESUMABLE,
        "maskdistill: interrupted: SIGTERM received: stopped after step 3",
    )
    assert classify_failure(Interrupted("SIGTERM received; stopped.", signal.SIGTERM, resumable=False))[0] == 143
    code, line = classify_failure(KeyboardInterrupt())
    assert code == 130 and line.startswith("maskdistill: interrupted: Ctrl-C")


def test_disk_failures_in_words():
    full = OSError(errno.ENOSPC, "No space left on device", "/runs/x/metrics.csv")
    assert classify_failure(full) == (
        1,
        "maskdistill: stopped: no space left on device writing /runs/x/metrics.csv. The checkpoints written "
        "before are kept; free space on that file system, then run the same command again (with --resume if a "
        "checkpoint was written).",
    )
    assert classify_failure(PermissionError(errno.EACCES, "Permission denied", "/runs/x"))[0] == 2
    st = SafetensorError('Error while serializing: I/O error: No space left on device (os error 28) at path "/r/m"')
    assert disk_errno(st) == errno.ENOSPC and disk_reason(st) == "no space left on device"
    assert disk_reason(SafetensorError("Error while serializing: HeaderTooLarge")) is None
    assert disk_reason(ValueError("no space left on device")) is None  # only OS errors count
    assert classify_failure(RuntimeError("boom")) is None  # a bug keeps its traceback


def test_a_read_only_output_folder_is_one_line_exit_2(tmp_path, tiny_overrides, capsys, restore_logging):
    if os.geteuid() != 0:
        pytest.skip("mounting a read-only tmpfs needs root")
    mnt = tmp_path / "ro"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(mnt)]).returncode:
        pytest.skip("cannot mount a tmpfs here")
    try:
        rc = main(["pretrain", "demo", *tiny_overrides, "--out", str(mnt / "run")])
    finally:
        subprocess.run(["umount", str(mnt)], check=False)
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err
    assert err.strip() == (
        f"maskdistill: error: read-only file system writing {mnt / 'run'}. The checkpoints written before are "
        "kept; use a writable folder, then run the same command again (with --resume if a checkpoint was written)."
    )
