"""Training metrics to CSV (one row per optimizer step, every process-averaged value),
TensorBoard and, with ``log.wandb=true``, Weights & Biases (``runs/wandb_log.py``), written by the
main process only. On resume, rows after the checkpoint's step are
dropped first, so the CSV of a resumed run reads like that of an uninterrupted one."""

from __future__ import annotations

import csv
import logging
from pathlib import Path
from typing import Any, Dict, List, Optional

log = logging.getLogger(__name__)


def read_metrics(path: str | Path) -> List[Dict[str, float]]:
    with open(path, newline="") as f:
        return [{k: float(v) for k, v in row.items() if v != ""} for row in csv.DictReader(f)]


class MetricsWriter:
    def __init__(
        self,
        run_dir: Path,
        enabled: bool = True,
        resume_step: Optional[int] = None,
        tensorboard: bool = True,
        name: str = "metrics",
        tb_prefix: str = "train",
        wandb: Optional[Any] = None,  # a runs.wandb_log.WandbLogger: the same rows, the TensorBoard names
    ) -> None:
        self.enabled = enabled
        self.wandb = wandb
        self.path = Path(run_dir) / f"{name}.csv"
        self.tb_prefix = tb_prefix
        self.fields: Optional[List[str]] = None
        self.tb = None
        if not enabled:
            return
        if resume_step is not None and self.path.exists():
            with open(self.path, newline="") as f:  # keep the rows as text: "1" stays "1", not "1.0"
                reader = csv.DictReader(f)
                fields = reader.fieldnames
                rows = [r for r in reader if float(r.get("step") or 0) <= resume_step]
            self.fields = list(fields) if rows and fields else None
            self._rewrite(rows)
        elif self.path.exists():
            self.path.unlink()
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(
                    str(Path(run_dir) / "tb" / ("" if name == "metrics" else name)), purge_step=resume_step
                )
            except ImportError:  # tensorboard is a dependency, but keep the run going without it
                log.warning("tensorboard is not installed; metrics go to metrics.csv only")

    def _rewrite(self, rows: List[Dict[str, str]]) -> None:
        with open(self.path, "w", newline="") as f:
            if rows:
                w = csv.DictWriter(f, fieldnames=self.fields)
                w.writeheader()
                w.writerows(rows)

    def write(self, row: Dict[str, float]) -> None:
        if not self.enabled:
            return
        new = not self.path.exists() or self.path.stat().st_size == 0
        if self.fields is None:
            self.fields = list(row.keys())
        with open(self.path, "a", newline="") as f:
            w = csv.DictWriter(f, fieldnames=self.fields, extrasaction="ignore")
            if new:
                w.writeheader()
            w.writerow(row)
        if self.tb is not None:
            step = int(row["step"])
            for k, v in row.items():
                if k not in ("step", "epoch"):
                    self.tb.add_scalar(f"{self.tb_prefix}/{k}", v, step)
        if self.wandb is not None:
            self.wandb.log(row, self.tb_prefix)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()
