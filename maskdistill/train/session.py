"""What every training job does around its own model (pre-training, paper Sec. 2; the supervised
classifier; fine-tuning, Sec. 4; the VQ-KD tokenizer, Sec. 5), written once.

``Session.open`` resolves the device, joins the process group, refuses an output folder that would
be clobbered -- before a teacher is loaded or a model built, and without writing anything -- and
seeds the model initialisation (the same on every process). The job then builds its task and asks
for its deterministic sample stream (``samples``); ``start`` writes the run folder (the resolved
config) only now that everything the run needs has been built, so a bad input leaves no half run
behind that would block the corrected command; ``job`` and ``run`` hand the task to the loop.

One writer per run folder (``runs/lock.py``): ``open`` refuses a folder that another live process
writes, ``start`` takes the folder's lock (before it clears or writes anything) and ``run`` gives it
back when the loop ends, however it ends.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch
from torch import nn
from torch.utils.data import Dataset

from maskdistill import __version__
from maskdistill.config import to_dict, to_yaml
from maskdistill.data.pipeline import SeededSamples
from maskdistill.data.sources import base_dataset
from maskdistill.data.transforms import pretrain_transform
from maskdistill.models.device import resolve_device
from maskdistill.parallel.group import Dist, barrier, init_distributed
from maskdistill.runs.folder import RESUME_FREE, prepare_run_dir
from maskdistill.runs.lock import RunLock, acquire, check_unlocked
from maskdistill.runs.wandb_log import require_wandb
from maskdistill.train.graceful import clear_stopped
from maskdistill.train.job import Job
from maskdistill.train.loop import run

# Where the metrics are logged (log.*: W&B on or off, its project, name, tags) does not change the
# results, so a run may be resumed with other log settings.
_RESUME_FREE = (*RESUME_FREE, "log")


@dataclass
class Session:
    """One job's device, process group and run folder; ``cfg`` is any job config (``JobConfig``)."""

    cfg: Any
    out: Path
    device: torch.device
    dist: Dist
    cfg_dict: Dict[str, Any]
    resume: bool = False
    overwrite: bool = False
    _base: Optional[Dataset] = None
    _lock: Optional[RunLock] = None

    @classmethod
    def open(
        cls, cfg: Any, out: str | Path, resume: bool = False, overwrite: bool = False, dist: Optional[Dist] = None
    ) -> "Session":
        device = resolve_device(cfg.train.device, "train.device")
        dist = dist or init_distributed(device)
        session = cls(cfg, Path(out), device, dist, to_dict(cfg), resume, overwrite)
        if dist.main:  # refuse early (before a teacher is loaded), but write nothing yet
            require_wandb(getattr(cfg, "log", None))
            check_unlocked(session.out)
            prepare_run_dir(session.out, session.cfg_dict, resume, overwrite, _RESUME_FREE, check_only=True)
        torch.manual_seed(cfg.train.seed)  # model initialisation: identical on every process
        return session

    @property
    def base(self) -> Dataset:
        """The job's images (``data.path``: an image folder or the built-in set), built once."""
        if self._base is None:
            self._base = base_dataset(self.cfg.data.path, self.cfg.data)
        return self._base

    def classes(self, num_classes: int, task: str) -> Tuple[List[str], int]:
        """The class names of the images and the number of classes (``num_classes``, 0 = as many
        as the data has); ``task`` names the job in the error for unlabelled images."""
        names = list(getattr(self.base, "classes", []))
        n = num_classes or len(names)
        if n <= 0:
            raise ValueError(f"{self.cfg.data.path} has no class sub-folders; {task} needs labelled images.")
        return names, n

    def samples(self, mask_gen: Any = None, transform: Optional[Callable] = None) -> SeededSamples:
        """Image *i* of epoch *e* decoded with a seed of (run seed, epoch, i); the transform is the
        pre-training one (RandomResizedCrop, jitter, flip) unless the job brings its own."""
        d = self.cfg.data
        tf = transform or pretrain_transform(d.img_size, d.min_scale, d.color_jitter, d.hflip)
        return SeededSamples(self.base, tf, mask_gen, self.cfg.train.seed)

    def start(self) -> None:
        """Create (or clear, with overwrite) the run folder and write the resolved config, on the
        main process only; the other processes wait for it."""
        if self.dist.main:
            self._lock = acquire(self.out)
            prepare_run_dir(self.out, self.cfg_dict, self.resume, self.overwrite, _RESUME_FREE)
            clear_stopped(self.out)
            if not self.resume:
                (self.out / "config.yaml").write_text(to_yaml(self.cfg))
        barrier(self.dist)

    def meta(self, kind: str, **extra: Any) -> Dict[str, Any]:
        """What every checkpoint of the job records: its kind, the package version, the config."""
        return {"kind": kind, "version": __version__, "config": self.cfg_dict, **extra}

    def job(
        self, task: nn.Module, batch_keys: Sequence[str], dataset: SeededSamples, meta: Dict[str, Any], **extra: Any
    ) -> Job:
        """The loop's job with the config's optimizer, loop and data-loading settings; ``extra``:
        the other ``Job`` fields (backbone, callbacks, evaluation, ...)."""
        d = self.cfg.data
        return Job(
            task=task,
            batch_keys=tuple(batch_keys),
            dataset=dataset,
            optim=self.cfg.optim,
            train=self.cfg.train,
            run_dir=self.out,
            meta=meta,
            num_workers=d.num_workers,
            max_corrupt_share=d.max_corrupt_share,
            log=getattr(self.cfg, "log", None),
            **extra,
        )

    def run(self, job: Job) -> Dict[str, float]:
        """Train (or resume) the job; returns the loop's summary. The folder's lock is released
        at the end, also when the loop stops on an error or a signal."""
        try:
            return run(job, self.device, self.dist, resume=self.resume)
        finally:
            if self._lock is not None:
                self._lock.release()
                self._lock = None


__all__ = ["Session"]
