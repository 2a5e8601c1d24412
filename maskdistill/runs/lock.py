"""One writer per run folder. A job holds ``<run>/.lock`` (an exclusive ``flock``, with the holder's
pid, host, start time and command written in it) from the moment it writes the folder until it ends;
a second job on that folder -- plain, ``--resume`` or ``--overwrite`` -- is refused, naming the live
process. The kernel drops the lock of a process that dies (even by ``kill -9``), so a lock left
behind by a dead process is simply taken over. On a file system without ``flock`` the pid in the
file decides (alive on this host: refused). Locks are per process and re-entrant: a process may open
the same folder again (a resumed stage of the demo, a test)."""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Optional

log = logging.getLogger(__name__)

LOCK = ".lock"
_held: Dict[str, "RunLock"] = {}


class RunLockedError(FileExistsError):
    """Another live process writes this run folder."""


@dataclass
class RunLock:
    path: Path
    fd: int

    def release(self) -> None:
        _held.pop(str(self.path), None)
        try:
            if _same_file(self.fd, self.path):
                self.path.unlink()
        except OSError:
            pass
        os.close(self.fd)


def _same_file(fd: int, path: Path) -> bool:
    try:
        return os.fstat(fd).st_ino == os.stat(path).st_ino
    except FileNotFoundError:
        return False


def _command() -> str:
    """This process's command line as the user typed it (``python -m maskdistill`` shows as maskdistill)."""
    argv = list(sys.argv)
    if argv and "maskdistill" in Path(argv[0]).parts + (Path(argv[0]).name,):
        argv[0] = "maskdistill"
    text = " ".join(argv)
    return text if len(text) <= 200 else text[:197] + "..."


def _holder(path: Path) -> Dict[str, Any]:
    try:
        return json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        return {}


def _describe(holder: Dict[str, Any]) -> str:
    if not holder:
        return "another process"
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(holder.get("started", 0)))
    return f"process {holder.get('pid')} on {holder.get('host')} (since {since}: {holder.get('command', '?')})"


def _refusal(run_dir: Path, holder: Dict[str, Any]) -> RunLockedError:
    return RunLockedError(
        f"{run_dir} is being written by {_describe(holder)}. Wait for it to end, stop it (kill -TERM "
        f"{holder.get('pid', '<pid>')} saves a checkpoint; then --resume continues it), or choose another --out."
    )


def _pid_alive(holder: Dict[str, Any]) -> bool:
    """For file systems without flock: whether the pid recorded on this host still runs."""
    pid = holder.get("pid")
    if not isinstance(pid, int) or holder.get("host") != socket.gethostname() or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _try_flock(fd: int) -> Optional[bool]:
    """True: locked; False: held by another process; None: the file system has no flock."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    except OSError as e:
        if e.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL, errno.EBADF):
            return None
        raise


def check_unlocked(run_dir: str | Path) -> None:
    """Raise :class:`RunLockedError` if another live process holds the folder's lock; writes nothing."""
    path = (Path(run_dir) / LOCK).absolute()
    if str(path) in _held or not path.is_file():
        return
    try:  # read-write: NFS emulates flock with byte-range locks, whose exclusive kind needs it
        fd = os.open(path, os.O_RDWR)
    except PermissionError:
        fd = os.open(path, os.O_RDONLY)
    try:
        got = _try_flock(fd)
        if got is False or (got is None and _pid_alive(_holder(path))):
            raise _refusal(Path(run_dir), _holder(path))
    finally:
        os.close(fd)  # closing drops a lock this check took


def acquire(run_dir: str | Path) -> RunLock:
    """Lock ``run_dir`` (created if needed) for this process, or raise :class:`RunLockedError`."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    path = (run_dir / LOCK).absolute()
    if str(path) in _held:
        return _held[str(path)]
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        got = _try_flock(fd)
        previous = _holder(path)
        if got is False or (got is None and _pid_alive(previous)):
            os.close(fd)
            raise _refusal(run_dir, previous)
        if _same_file(fd, path):  # not unlinked by a releasing holder meanwhile
            break
        os.close(fd)
    if previous.get("pid") not in (None, os.getpid()):
        log.info("taking over the lock of %s, which no longer runs", _describe(previous))
    me = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time(), "command": _command()}
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(me).encode(), 0)
    lock = RunLock(path, fd)
    _held[str(path)] = lock
    return lock


__all__ = ["LOCK", "RunLock", "RunLockedError", "acquire", "check_unlocked"]
