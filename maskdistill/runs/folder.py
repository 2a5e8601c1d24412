"""Run folders: an output folder that holds a run is never overwritten silently (``--overwrite``
replaces it, ``--resume`` continues it), and resuming with a different config is refused with the
list of differences."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any, Dict, Sequence

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


class RunExistsError(FileExistsError):
    """The output folder holds a run and neither --resume nor --overwrite was given."""


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
    holds_run = (out / "config.yaml").exists() or (out / "checkpoints").exists()
    if resume:
        if not (out / "checkpoints").exists():
            raise FileNotFoundError(f"--resume: {out} holds no checkpoints to resume from.")
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
    if holds_run:
        # Everything a run writes; a fine-tune's best/ and the callbacks' metrics_<group>.csv too, or the
        # new run would compare itself with the old run's best score and inherit its logs.
        names = ["checkpoints", "best", "tb", "metrics.csv", "config.yaml", "log.txt", "results.json"]
        for name in names + sorted(q.name for q in out.glob("metrics_*.csv")):
            p = out / name
            if p.exists():
                log.warning("--overwrite: removing %s", p)
                if p.is_dir():
                    shutil.rmtree(p)
                elif name == "log.txt":  # the CLI's log handler already appends to it: empty it in place
                    p.write_text("")
                else:
                    p.unlink()
    out.mkdir(parents=True, exist_ok=True)


def _load_yaml(path: Path) -> Dict[str, Any]:
    from omegaconf import OmegaConf

    return OmegaConf.to_container(OmegaConf.load(path))  # type: ignore[return-value]


__all__ = ["RESUME_FREE", "RunExistsError", "prepare_run_dir"]
