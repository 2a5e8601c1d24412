"""Graceful stop. SLURM and Kubernetes send SIGTERM some time before they kill a job (SLURM's
``--signal`` chooses the signal and how early), Ctrl-C sends SIGINT, and SIGUSR1 is the usual
"checkpoint and go" signal of cluster scripts. While a training loop runs, :class:`StopRequest`
records the first of them instead of dying; the loop finishes its current step, writes a checkpoint
at that step and exits with the resumable code (``maskdistill.errors.RESUMABLE``). A second Ctrl-C
stops at once, without a checkpoint. DataLoader workers ignore the three signals (a terminal sends
SIGINT to the whole process group, SLURM signals every process of a job step): the main process
ends them when it stops.

Commands that cannot resume (``analyze``) use :func:`interrupt_on_signals`: the first signal ends
the command with one line and exit 128 + the signal number, without a traceback.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from types import FrameType
from typing import Callable, Dict, Iterator, Optional

from maskdistill.errors import Interrupted

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1)
Handler = Callable[[int, Optional[FrameType]], None]


def signal_name(signum: int) -> str:
    return signal.Signals(signum).name


@contextlib.contextmanager
def _handlers(handler: Handler) -> Iterator[None]:
    """Install ``handler`` for the stop signals (main thread only: Python allows no other), then
    put the previous handlers back."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old: Dict[int, object] = {s: signal.getsignal(s) for s in STOP_SIGNALS}
    for s in STOP_SIGNALS:
        signal.signal(s, handler)
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)  # type: ignore[arg-type]


class StopRequest:
    """``with StopRequest() as stop:`` -- ``stop.signum`` is the first stop signal received (None
    until then)."""

    def __init__(self) -> None:
        self.signum: Optional[int] = None
        self._ctx: Optional[contextlib.AbstractContextManager] = None

    @property
    def name(self) -> str:
        return signal_name(self.signum) if self.signum is not None else ""

    def _handle(self, signum: int, frame: Optional[FrameType]) -> None:
        # Record only: the handler runs between two bytecodes of the main thread, which may be inside
        # a write to stderr; logging from here would re-enter it. The loop says what it does.
        if self.signum is not None:
            if signum == signal.SIGINT:  # Ctrl-C again: the user does not want to wait
                raise KeyboardInterrupt
            return
        self.signum = signum

    def __enter__(self) -> "StopRequest":
        self._ctx = _handlers(self._handle)
        self._ctx.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._ctx is not None
        self._ctx.__exit__(*exc)


@contextlib.contextmanager
def interrupt_on_signals(what: str) -> Iterator[None]:
    """Turn a stop signal into :class:`~maskdistill.errors.Interrupted` (not resumable): ``what``
    says what is kept, e.g. "the models finished so far are saved in DIR"."""

    def handle(signum: int, frame: Optional[FrameType]) -> None:
        raise Interrupted(f"{signal_name(signum)} received; stopped. {what}", signum, resumable=False)

    with _handlers(handle):
        yield


def ignore_stop_signals(worker_id: int) -> None:
    """``worker_init_fn`` of the training DataLoaders: workers leave the stop signals to the main
    process, which ends them."""
    for s in STOP_SIGNALS:
        signal.signal(s, signal.SIG_IGN)


__all__ = ["STOP_SIGNALS", "StopRequest", "interrupt_on_signals", "ignore_stop_signals", "signal_name"]
