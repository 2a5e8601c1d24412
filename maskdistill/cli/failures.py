"""How a failed command is reported: which exceptions are the user's to fix (exit 2, one
``maskdistill: error:`` message), which are a run that stopped on purpose (exit 1, ``maskdistill:
stopped:``), and which are left to propagate with their traceback (a bug or an environment failure).
The policy itself is stated in the docstring of :mod:`maskdistill.cli`."""

from __future__ import annotations

from pathlib import Path
from types import TracebackType
from typing import Optional, Tuple

from maskdistill.errors import RunStopped, UsageError

PACKAGE_DIR = Path(__file__).resolve().parents[1]  # the maskdistill package folder

USAGE = 2
STOPPED = 1


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


def classify_failure(exc: BaseException) -> Optional[Tuple[int, str]]:
    """``(exit code, the line for stderr)`` for a failure the command reports itself; ``None`` for
    one that must propagate with its traceback."""
    if isinstance(exc, RunStopped):
        return STOPPED, f"maskdistill: stopped: {message(exc)}"
    usage = isinstance(exc, (UsageError, FileNotFoundError, FileExistsError))
    if usage or (isinstance(exc, (ValueError, KeyError)) and raised_in_maskdistill(exc)):
        return USAGE, f"maskdistill: error: {message(exc)}"
    return None


__all__ = ["classify_failure", "raised_in_maskdistill", "message", "USAGE", "STOPPED"]
