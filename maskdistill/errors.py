"""The three kinds of failure a maskdistill command can end with, and so its exit code.

- :class:`UsageError` (exit 2, one line): the command, a config value, a path or a model spec cannot
  work as given; the message names the problem and the fix. :class:`~maskdistill.config.ConfigError`
  is one. ``FileNotFoundError`` and ``FileExistsError`` about the user's paths count the same.
- :class:`RunStopped` (exit 1, its message): a run that started and stopped on purpose because going
  on would produce wrong numbers -- a NaN loss, too many corrupt images.
- anything else (exit 1 with the traceback): a bug or an environment failure (CUDA out of memory,
  a full disk), which the traceback helps to find.

This module imports nothing, so every layer may raise these.
"""

from __future__ import annotations


class UsageError(ValueError):
    """A usage, config or input mistake; the message names the fix. A ``ValueError``, so callers that
    catch ``ValueError`` keep working."""


class RunStopped(RuntimeError):
    """A run stopped on bad data or a non-finite loss; what was saved before is kept."""


__all__ = ["UsageError", "RunStopped"]
