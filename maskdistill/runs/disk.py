"""Failures of the file system in the user's words: a full disk, a quota, a missing permission, a
read-only mount. ``disk_reason`` reads them from an ``OSError`` or from safetensors' own error (which
carries the OS error code in its text only), so a failed write can be reported in one line naming
the file, what is kept and the fix, instead of a traceback."""

from __future__ import annotations

import errno
import re
from typing import Optional

from maskdistill.errors import RunStopped

REASONS = {
    errno.ENOSPC: "no space left on device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.EROFS: "read-only file system",
}
FIXES = {
    errno.ENOSPC: "free space on that file system",
    errno.EDQUOT: "free space within your quota",
    errno.EACCES: "make the folder writable for you",
    errno.EPERM: "make the folder writable for you",
    errno.EROFS: "use a writable folder",
}
_OS_CODE = re.compile(r"(?:code:\s*|os error\s+|\[Errno\s+)(\d+)")


class DiskError(RunStopped):
    """A write failed on the file system (full, over quota, not permitted); the message names the
    file, what was kept and the fix."""


def disk_errno(exc: BaseException) -> Optional[int]:
    """The errno of a file-system failure that is the environment's, not a bug: from an ``OSError``
    or from the text of a safetensors error; None for anything else."""
    code = getattr(exc, "errno", None) if isinstance(exc, OSError) else None
    if code is None and type(exc).__name__ == "SafetensorError":
        m = _OS_CODE.search(str(exc))
        code = int(m.group(1)) if m else None
    return code if code in REASONS else None


def disk_reason(exc: BaseException) -> Optional[str]:
    """``"no space left on device"`` and the like, or None when ``exc`` is no such failure."""
    code = disk_errno(exc)
    return REASONS[code] if code is not None else None


def disk_fix(exc: BaseException) -> str:
    code = disk_errno(exc)
    return FIXES.get(code, "fix the file system") if code is not None else "fix the file system"


__all__ = ["DiskError", "disk_errno", "disk_reason", "disk_fix", "REASONS"]
