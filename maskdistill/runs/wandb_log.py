"""Weights & Biases logging beside ``metrics.csv`` and TensorBoard (``log.wandb=true``, the optional
``[wandb]`` extra): the same scalars as the CSV files, under the same names as in TensorBoard
(``train/loss``, ``eval/top1``, ...), at the optimizer step, and the resolved config. The W&B run id is
kept in ``<run>/wandb_run.json``, so a resumed run continues the same W&B run; a new (or
overwritten) run starts a new one. ``WANDB_MODE=offline`` writes the run under ``<run>/wandb/``."""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Any, Dict, Optional

from maskdistill.errors import UsageError

STEP = "step"
ID_FILE = "wandb_run.json"


def _import_wandb() -> Any:
    try:
        import wandb
    except ImportError:
        raise UsageError(
            "log.wandb=true needs the wandb package: pip install 'maskdistill[wandb]' (or pip install wandb), "
            "or set log.wandb=false."
        ) from None
    return wandb


class WandbLogger:
    """One W&B run of one run folder; ``log`` takes a metrics row as written to the CSV."""

    def __init__(self, run: Any) -> None:
        self.run = run

    @property
    def id(self) -> str:
        return str(self.run.id)

    @classmethod
    def open(cls, run_dir: Path, log_cfg: Any, config: Dict[str, Any], resume: bool) -> "WandbLogger":
        """Start (or, when ``resume`` and the folder knows its W&B run, continue) the W&B run."""
        wandb = _import_wandb()
        run_dir = Path(run_dir)
        id_file = run_dir / ID_FILE
        known = json.loads(id_file.read_text()) if resume and id_file.is_file() else {}
        run_id = known.get("id") or secrets.token_hex(4)  # W&B ids: lowercase letters and digits
        run = wandb.init(
            project=log_cfg.project or None,
            entity=log_cfg.entity or None,
            name=log_cfg.name or run_dir.name,
            tags=list(log_cfg.tags) or None,
            id=run_id,
            resume="allow",
            dir=str(run_dir),
            config=config,
            mode=log_cfg.mode or None,
            reinit="finish_previous",
        )
        id_file.write_text(json.dumps({"id": run.id, "project": run.project, "entity": run.entity or ""}))
        run.define_metric("*", step_metric=STEP)  # charts over the training step, not W&B's row counter
        return cls(run)

    def log(self, row: Dict[str, float], prefix: str) -> None:
        """One W&B row per CSV row, the training step as its ``step`` value. (Passing ``step=`` to
        ``run.log`` instead merges rows of the same step and drops rows of an earlier one, e.g. an
        evaluation logged after the training row of its step.)"""
        values = {f"{prefix}/{k}": v for k, v in row.items() if k != "step"}
        self.run.log({STEP: int(row["step"]), **values})

    def close(self) -> None:
        self.run.finish()
        # finish() returns before W&B's service has written the run's last records (an offline run
        # file can still be empty); teardown waits for it, so the job ends with its log complete.
        _import_wandb().teardown()


def require_wandb(log_cfg: Optional[Any]) -> None:
    """Refuse ``log.wandb=true`` without the package before a run folder is written."""
    if log_cfg is not None and getattr(log_cfg, "wandb", False):
        _import_wandb()


def open_wandb(run_dir: Path, log_cfg: Optional[Any], config: Dict[str, Any], resume: bool) -> Optional[WandbLogger]:
    """The W&B run of a training job, or None when ``log.wandb`` is off (or the job has no ``log``)."""
    if log_cfg is None or not getattr(log_cfg, "wandb", False):
        return None
    return WandbLogger.open(run_dir, log_cfg, config, resume)


__all__ = ["ID_FILE", "WandbLogger", "open_wandb", "require_wandb"]
