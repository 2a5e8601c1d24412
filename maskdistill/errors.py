"""The three kinds of failure a maskdistill command can end with, and so its exit code.

- :class:`UsageError` (exit 2, one line): the command, a config value, a path or a model spec cannot
  work as given; the message names the problem and the fix. :class:`~maskdistill.config.ConfigError`
  is one. ``FileNotFoundError`` and ``FileExistsError`` about the user's paths count the same.
- :class:`RunStopped` (exit 1, its message): a run that started and stopped on purpose because going
  on would produce wrong numbers -- a NaN loss, too many corrupt images.
- :class:`Interrupted` (exit 75, one line): a run stopped by a signal (SIGTERM, SIGINT, SIGUSR1)
  after writing a checkpoint at its current step; ``--resume`` continues it. Exit 75 is sysexits'
  EX_TEMPFAIL ("try again later"), what a batch script tests before requeueing the job. A command
  that cannot resume (``analyze``) exits 128 + the signal number instead.
- anything else (exit 1 with the traceback): a bug or an environment failure (CUDA out of memory),
  which the traceback helps to find.

This module imports nothing, so every layer may raise these.
"""

from __future__ import annotations


class UsageError(ValueError):
    """A usage, config or input mistake; the message names the fix. A ``ValueError``, so callers that
    catch ``ValueError`` keep working."""


class RunStopped(RuntimeError):
    """A run stopped on bad data or a non-finite loss; what was saved before is kept."""


class Interrupted(BaseException):
    """A signal stopped the command. ``resumable``: a checkpoint at the current step was written
    and ``--resume`` continues the run (exit :data:`RESUMABLE`); otherwise the exit code is 128 +
    the signal number, as a shell reports a process killed by it. A ``BaseException``, as
    ``KeyboardInterrupt`` is: code that catches ``Exception`` to go on after a failure (a probe
    that raised) must not swallow it."""

    def __init__(self, message: str, signum: int, resumable: bool) -> None:
        super().__init__(message)
        self.signum, self.resumable = signum, resumable


RESUMABLE = 75  # sysexits.h EX_TEMPFAIL: a temporary failure, the command may be run again


__all__ = ["UsageError", "RunStopped", "Interrupted", "RESUMABLE"]
