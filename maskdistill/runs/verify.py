"""Verified checkpoints: every checkpoint folder records the SHA-256 and size of each file it holds
(``checksums.json``, written last, before the folder is renamed into place), and a checkpoint is
checked against it before it is used. A run folder resolves to its newest checkpoint that verifies:
a damaged one (truncated, garbled or changed bytes, bad JSON, a missing file, ``latest`` naming a
folder that is gone) is named with what failed and the next older one is tried; with none left, the
error lists every checkpoint tried. Checkpoints written before checksums existed are checked for
readable JSON and safetensors headers only, and called unverified."""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from maskdistill.config.spec_forms import SPEC_FORMS
from maskdistill.errors import UsageError

log = logging.getLogger(__name__)

LATEST = "latest"
CHECKSUMS = "checksums.json"
REQUIRED = ("meta.json",)  # and model.safetensors in a step_* folder (a run's best/ holds the backbone only)

# (folder, its files' names, sizes and mtimes) -> problem or None: a run's checkpoint is resolved
# several times (folder check, restore, error messages); hash each unchanged folder once.
_cache: Dict[Tuple[str, Tuple[Tuple[str, int, int], ...]], Optional[str]] = {}


class CheckpointError(UsageError):
    """No checkpoint of a run (or the one named) verifies; the message lists what failed."""


def file_sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def write_checksums(ck: Path) -> None:
    """Record the hash and size of every file in ``ck`` (called once all of them are written)."""
    files = {
        p.name: {"sha256": file_sha256(p), "bytes": p.stat().st_size}
        for p in sorted(Path(ck).iterdir())
        if p.is_file() and p.name != CHECKSUMS
    }
    (Path(ck) / CHECKSUMS).write_text(json.dumps({"algorithm": "sha256", "files": files}, indent=1))


def is_verified(ck: Path) -> bool:
    """Whether ``ck`` holds checksums and every file matches them."""
    return (Path(ck) / CHECKSUMS).is_file() and checkpoint_problem(ck) is None


def checkpoint_problem(ck: Path) -> Optional[str]:
    """``None`` when the checkpoint folder ``ck`` is sound, else what failed, naming the file."""
    ck = Path(ck)
    if not ck.is_dir():
        return f"{ck} does not exist"
    stamp = tuple((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(ck.iterdir()) if p.is_file())
    key = (str(ck.resolve()), stamp)
    if key not in _cache:
        _cache[key] = _check_sums(ck) if (ck / CHECKSUMS).is_file() else _check_structure(ck)
    return _cache[key]


def _required(ck: Path) -> Tuple[str, ...]:
    return REQUIRED + (("model.safetensors",) if ck.name.startswith("step_") else ())


def _check_sums(ck: Path) -> Optional[str]:
    try:
        files = json.loads((ck / CHECKSUMS).read_text())["files"]
        recorded = {name: (int(v["bytes"]), str(v["sha256"])) for name, v in files.items()}
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        return f"{ck / CHECKSUMS} is unreadable ({type(e).__name__}: {e})"
    for name in _required(ck):
        if name not in recorded:
            return f"{ck / name} is missing"
    for name, (size, digest) in recorded.items():
        p = ck / name
        if not p.is_file():
            return f"{p} is missing"
        if p.stat().st_size != size:
            return f"{p} has {p.stat().st_size} bytes where {size} were written (truncated or replaced)"
        if file_sha256(p) != digest:
            return f"{p} does not match its recorded SHA-256 (its bytes changed after it was written)"
    return None


def _check_structure(ck: Path) -> Optional[str]:
    """A checkpoint without checksums: its JSON must parse and its safetensors headers must read."""
    from safetensors import safe_open

    for name in _required(ck):
        if not (ck / name).is_file():
            return f"{ck / name} is missing"
    try:
        json.loads((ck / "meta.json").read_text())
    except ValueError as e:
        return f"{ck / 'meta.json'} is not valid JSON ({e})"
    for p in sorted(ck.glob("*.safetensors")):
        try:
            with safe_open(str(p), framework="pt") as f:
                f.keys()
        except Exception as e:  # noqa: BLE001 - safetensors raises its own error type for any bad header
            return f"{p} is not a readable safetensors file ({e})"
    return None


def _candidates(ckdir: Path) -> Tuple[List[Path], List[str]]:
    """The step folders, newest first, and the problem of a ``latest`` that names a missing one."""
    steps = sorted((p for p in ckdir.glob("step_*") if p.is_dir()), reverse=True)
    problems = []
    latest = ckdir / LATEST
    if latest.is_file():
        name = latest.read_text().strip()
        if not (ckdir / name).is_dir():
            problems.append(f"{latest} names {name!r}, which does not exist")
    return steps, problems


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint folder (verified) or a run folder (its newest checkpoint that verifies; a
    damaged newer one is logged with what failed) -> the checkpoint folder to use."""
    p = Path(path).expanduser()
    if (p / "meta.json").is_file() or (p / CHECKSUMS).is_file():
        problem = checkpoint_problem(p)
        if problem:
            raise CheckpointError(f"checkpoint {p} is damaged: {problem}. Use another checkpoint of its run.")
        return p
    steps, tried = _candidates(p / "checkpoints")
    for ck in steps:
        problem = checkpoint_problem(ck)
        if problem is None:
            if tried:
                log.warning("using checkpoint %s; newer ones failed verification: %s", ck, "; ".join(tried))
            return ck
        log.warning("checkpoint %s is damaged: %s", ck.name, problem)
        tried.append(problem)
    if not p.exists():
        raise FileNotFoundError(f"{str(p)!r} does not exist; give {SPEC_FORMS}.")
    if not steps:
        raise FileNotFoundError(f"{p} holds no maskdistill checkpoint (no meta.json, no checkpoints/step_*).")
    raise CheckpointError(
        f"no checkpoint in {p} verifies; tried:\n  "
        + "\n  ".join(tried)
        + "\nRestore a checkpoint from a copy, or start the run again with --overwrite."
    )


def newest_verified(run_dir: str | Path) -> Optional[Path]:
    """The newest checkpoint of ``run_dir`` whose checksums verify (None if there is none); what
    error messages may call a good checkpoint."""
    steps, _ = _candidates(Path(run_dir) / "checkpoints")
    return next((ck for ck in steps if is_verified(ck)), None)


__all__ = [
    "CHECKSUMS",
    "LATEST",
    "CheckpointError",
    "checkpoint_problem",
    "file_sha256",
    "is_verified",
    "newest_verified",
    "resolve_checkpoint",
    "write_checksums",
]
