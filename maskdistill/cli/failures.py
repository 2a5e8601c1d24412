"""How a failed command is reported: which exceptions are the user's to fix (exit 2, one
``maskdistill: error:`` message), which are a run that stopped on purpose (exit 1, ``maskdistill:
stopped:``), which are a signal (the resumable exit code after a graceful stop, ``maskdistill:
interrupted:``), and which are left to propagate with their traceback (a bug). A full disk, a quota
or a missing permission is told in words, naming the file. The policy itself is stated in the
docstring of :mod:`maskdistill.cli`."""

from __future__ import annotations

import errno
from pathlib import Path
from types import TracebackType
from typing import Optional, Tuple

from maskdistill.errors import RESUMABLE, Interrupted, RunStopped, UsageError
from maskdistill.runs.disk import disk_errno, disk_fix, disk_reason

PACKAGE_DIR = Path(__file__).resolve().parents[1]  # the maskdistill package folder

USAGE = 2
STOPPED = 1
CTRL_C = 130  # 128 + SIGINT, what a shell reports for a process ended by Ctrl-C


def raised_in_maskdistill(exc: BaseException) -> bool:
    """Whether the innermost frame of ``exc``'s traceback is maskdistill's own code. A ``ValueError``
    maskdistill raises about its input names the fix; one raised inside torch, timm or numpy is a
    failure of the library call and needs its traceback."""
    tb: Optional[TracebackType] = exc.__traceback__
    if tb is None:
        return False
    while tb.tb_next is not None:
        tb = tb.tb_next
    try:
        Path(tb.tb_frame.f_code.co_filename).resolve().relative_to(PACKAGE_DIR)
    except ValueError:  # not below the package folder (or not a file, e.g. "<string>")
        return False
    return True


def message(exc: BaseException) -> str:
    """The text of ``exc``; a ``KeyError``'s own message without the quotes ``str()`` adds."""
    if isinstance(exc, KeyError) and len(exc.args) == 1 and isinstance(exc.args[0], str):
        return exc.args[0]
    return str(exc)


def _disk_failure(exc: BaseException) -> Optional[Tuple[int, str]]:
    """A file-system failure outside a checkpoint write: the file, the reason and the fix."""
    reason = disk_reason(exc)
    if reason is None:
        return None
    name = getattr(exc, "filename", None)
    where = f" writing {name}" if name else ""
    code = USAGE if disk_errno(exc) in (errno.EACCES, errno.EPERM, errno.EROFS) else STOPPED
    kind = "error" if code == USAGE else "stopped"
    return code, (
        f"maskdistill: {kind}: {reason}{where}. The checkpoints written before are kept; "
        f"{disk_fix(exc)}, then run the same command again (with --resume if a checkpoint was written)."
    )


def classify_failure(exc: BaseException) -> Optional[Tuple[int, str]]:
    """``(exit code, the line for stderr)`` for a failure the command reports itself; ``None`` for
    one that must propagate with its traceback."""
    if isinstance(exc, Interrupted):
        return (RESUMABLE if exc.resumable else 128 + exc.signum), f"maskdistill: interrupted: {message(exc)}"
    if isinstance(exc, KeyboardInterrupt):
        return CTRL_C, "maskdistill: interrupted: Ctrl-C; stopped at once (the checkpoints written before are kept)."
    disk = _disk_failure(exc)
    if disk is not None and not isinstance(exc, RunStopped):
        return disk
    if isinstance(exc, RunStopped):
        return STOPPED, f"maskdistill: stopped: {message(exc)}"
    usage = isinstance(exc, (UsageError, FileNotFoundError, FileExistsError))
    if usage or (isinstance(exc, (ValueError, KeyError)) and raised_in_maskdistill(exc)):
        return USAGE, f"maskdistill: error: {message(exc)}"
    return None


__all__ = ["classify_failure", "raised_in_maskdistill", "message", "USAGE", "STOPPED", "CTRL_C"]
