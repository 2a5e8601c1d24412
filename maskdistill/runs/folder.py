"""Run folders: an output folder that holds a run is never overwritten silently (``--overwrite``
replaces it, ``--resume`` continues it), and resuming with a different config is refused with the
list of differences. A folder holds a run once it holds a finished checkpoint: what a start that
stopped before its first one left (a config, a few metric rows) is replaced by the next start, with
a warning naming it, and every refusal names the way out."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any, Dict, List, Sequence

from maskdistill.config import diff

log = logging.getLogger(__name__)

# Keys that may change between a run and its resumption without changing the results.
RESUME_FREE = (
    "train.max_steps",
    "train.log_every",
    "train.ckpt_every",
    "train.keep_last",
    "train.device",
    "train.compile",
    "data.num_workers",
)
# Everything a run writes; a fine-tune's best/ and the callbacks' metrics_<group>.csv too, or a new
# run would compare itself with the old run's best score and inherit its logs.
RUN_FILES = ("checkpoints", "best", "tb", "metrics.csv", "config.yaml", "log.txt", "results.json", "stopped.json")


class RunExistsError(FileExistsError):
    """The output folder holds a run and neither --resume nor --overwrite was given."""


def has_checkpoint(out: str | Path) -> bool:
    """Whether ``out`` holds a finished checkpoint (a renamed ``step_*`` folder, damaged or not)."""
    return any(p.is_file() for p in (Path(out) / "checkpoints").glob("step_*/meta.json"))


def run_files(out: Path) -> List[Path]:
    """The files and folders a run writes that are present in ``out``."""
    names = list(RUN_FILES) + sorted(q.name for q in out.glob("metrics_*.csv"))
    return [out / name for name in names if (out / name).exists()]


def prepare_run_dir(
    out: Path,
    cfg_dict: Dict[str, Any],
    resume: bool,
    overwrite: bool,
    resume_free: Sequence[str] = RESUME_FREE,
    check_only: bool = False,
) -> None:
    """Refuse to clobber a run unless asked; on resume, refuse a changed config (listing changes).
    ``check_only``: raise what would be refused, but change nothing on disk."""
    out = Path(out)
    holds_run = has_checkpoint(out)
    if resume:
        if not holds_run:
            left = ", ".join(p.name for p in run_files(out) if p.name != "log.txt")
            raise FileNotFoundError(
                f"--resume: {out} holds no checkpoints to resume from"
                + (f" (only {left}, left by a start that stopped before its first checkpoint)" if left else "")
                + "; run the same command without --resume to start the run there."
            )
        changes = diff(_load_yaml(out / "config.yaml"), cfg_dict, ignore=resume_free)
        if changes:
            raise ValueError(
                f"--resume with a config that differs from the run in {out}:\n  "
                + "\n  ".join(changes)
                + "\nResume with the run's config, or start a new run "
                "in another folder."
            )
        return
    if holds_run and not overwrite:
        raise RunExistsError(
            f"{out} already holds a run; pass --resume to continue it, --overwrite "
            f"to replace it, or choose another output folder."
        )
    if check_only:
        return
    _clear(out, "--overwrite: removing" if holds_run else "replacing a start that stopped before its first checkpoint:")
    out.mkdir(parents=True, exist_ok=True)


def _clear(out: Path, why: str) -> None:
    """Remove what a previous run or start wrote in ``out`` (files the user put there stay)."""
    removed: List[str] = []
    found = run_files(out)
    if all(p.name == "log.txt" for p in found):  # only this command's own log so far: keep it
        return
    for p in found:
        if p.is_dir():
            shutil.rmtree(p)
        elif p.name == "log.txt":  # the CLI's log handler already appends to it: empty it in place
            p.write_text("")
        else:
            p.unlink()
        removed.append(p.name)
    log.warning("%s %s in %s", why, ", ".join(removed), out)


def _load_yaml(path: Path) -> Dict[str, Any]:
    from omegaconf import OmegaConf

    return OmegaConf.to_container(OmegaConf.load(path))  # type: ignore[return-value]


__all__ = ["RESUME_FREE", "RUN_FILES", "RunExistsError", "has_checkpoint", "prepare_run_dir", "run_files"]
