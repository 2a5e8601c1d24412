"""Checkpoints: safetensors for tensors plus a JSON of config, step, optimizer hyper-parameters and
RNG state, written atomically (a temporary folder renamed into place, then a ``latest`` pointer
replaced atomically), so an interrupted write never leaves a half checkpoint behind. Each folder
records the hash of every file it holds (``runs/verify.py``), checked before it is used; a write
that fails on the file system (a full disk) removes its temporary folder and says what was kept.

Layout of ``<run>/checkpoints/step_00001000/``:
  model.safetensors      trainable state of the task (teacher excluded: it is frozen and rebuilt)
  backbone.safetensors   the encoder alone, loadable into ``timm.create_model(arch, **kwargs)``
  optimizer.safetensors  optimizer state tensors and RNG states
  meta.json              config, step, optimizer param groups, backbone arch/kwargs/mean/std
  checksums.json         SHA-256 and size of each file above
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from maskdistill.runs.disk import DiskError, disk_fix, disk_reason
from maskdistill.runs.verify import LATEST, CheckpointError, resolve_checkpoint, write_checksums


def _flatten_optimizer(opt_sd: Dict[str, Any]) -> Tuple[Dict[str, torch.Tensor], Dict[str, Any]]:
    tensors, scalars = {}, {}
    for idx, st in opt_sd["state"].items():
        for name, v in st.items():
            if isinstance(v, torch.Tensor):
                tensors[f"optim.{idx}.{name}"] = v.detach().cpu().contiguous()
            else:
                scalars[f"{idx}.{name}"] = v
    return tensors, {"param_groups": opt_sd["param_groups"], "scalars": scalars}


def _unflatten_optimizer(tensors: Dict[str, torch.Tensor], meta: Dict[str, Any]) -> Dict[str, Any]:
    state: Dict[int, Dict[str, Any]] = {}
    for key, v in tensors.items():
        if key.startswith("optim."):
            _, idx, name = key.split(".", 2)
            state.setdefault(int(idx), {})[name] = v
    for key, v in meta["scalars"].items():
        idx, name = key.split(".", 1)
        state.setdefault(int(idx), {})[name] = v
    return {"state": state, "param_groups": meta["param_groups"]}


def trainable_state(model: nn.Module) -> Dict[str, torch.Tensor]:
    return {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items() if not k.startswith("teacher.")}


def save_checkpoint(
    run_dir: Path,
    step: int,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    meta: Dict[str, Any],
    backbone: Optional[Tuple[nn.Module, Dict[str, Any]]] = None,
    keep_last: int = 2,
) -> Path:
    ckdir = Path(run_dir) / "checkpoints"
    ckdir.mkdir(parents=True, exist_ok=True)
    final = ckdir / f"step_{step:08d}"
    tmp = ckdir / f".tmp_step_{step:08d}"
    shutil.rmtree(tmp, ignore_errors=True)
    writing = [tmp]  # the file being written, for the message of a failed write
    try:
        tmp.mkdir()
        _write_files(tmp, model, optimizer, dict(meta, step=step), backbone, writing)
        if final.exists():  # re-saving the same step (e.g. final == periodic): replace it whole
            shutil.rmtree(final)
        os.replace(tmp, final)
        _write_atomic(ckdir / LATEST, final.name)
    except Exception as e:
        reason = disk_reason(e)
        if reason is None:
            raise
        shutil.rmtree(tmp, ignore_errors=True)
        kept = _kept(ckdir, final.name)
        raise DiskError(
            f"could not write checkpoint {final.name}: {reason} (writing {writing[-1]}). Kept: "
            f"{kept}. {disk_fix(e).capitalize()}, then run the same command with --resume."
        ) from None
    _prune(ckdir, keep_last, keep=final.name)
    return final


def _kept(ckdir: Path, failed: str) -> str:
    try:
        return f"{resolve_checkpoint(ckdir.parent)} (resumable)"
    except (FileNotFoundError, CheckpointError):
        return f"no earlier checkpoint ({failed} was the first)"


def _write_files(
    tmp: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    meta: Dict[str, Any],
    backbone: Optional[Tuple[nn.Module, Dict[str, Any]]],
    writing: list,
) -> None:
    """The files of one checkpoint, the checksums last; ``writing`` gets each path as it starts."""
    writing.append(tmp / "model.safetensors")
    save_file(trainable_state(model), str(writing[-1]))
    opt_tensors, opt_meta = _flatten_optimizer(optimizer.state_dict())
    opt_tensors["rng.torch"] = torch.get_rng_state()
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        opt_tensors["rng.cuda"] = torch.cuda.get_rng_state()
    writing.append(tmp / "optimizer.safetensors")
    save_file(opt_tensors, str(writing[-1]))
    meta = dict(meta, optimizer=opt_meta)
    if backbone is not None:
        module, info = backbone
        writing.append(tmp / "backbone.safetensors")
        save_file(
            {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()},
            str(writing[-1]),
            metadata={"arch": str(info.get("arch", ""))},
        )
        meta["backbone"] = info
    writing.append(tmp / "meta.json")
    writing[-1].write_text(json.dumps(meta, indent=1, default=str))
    writing.append(tmp / "checksums.json")
    write_checksums(tmp)


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _prune(ckdir: Path, keep_last: int, keep: str) -> None:
    # A save that crashed half-way left its .tmp_step_* folder; one writer, so any still here is stale.
    for p in ckdir.glob(".tmp_step_*"):
        shutil.rmtree(p, ignore_errors=True)
    steps = sorted(p for p in ckdir.glob("step_*") if p.is_dir())
    for p in steps[:-keep_last] if keep_last > 0 else []:
        if p.name != keep:
            shutil.rmtree(p, ignore_errors=True)


def find_checkpoint(path: str | Path) -> Path:
    """A run directory (its newest checkpoint that verifies) or a checkpoint directory (verified)
    -> checkpoint directory; see :func:`maskdistill.runs.verify.resolve_checkpoint`."""
    return resolve_checkpoint(path)


def run_finished(run_dir: str | Path) -> bool:
    """True when the run's latest checkpoint is at the end of its schedule."""
    try:
        meta = read_meta(find_checkpoint(run_dir))
    except (FileNotFoundError, CheckpointError):
        return False
    return int(meta["step"]) >= int(meta.get("total_steps", 0))


def read_meta(ck: Path) -> Dict[str, Any]:
    return json.loads((Path(ck) / "meta.json").read_text())


def load_checkpoint(
    ck: Path, model: nn.Module, optimizer: Optional[torch.optim.Optimizer] = None, restore_rng: bool = True
) -> Dict[str, Any]:
    """Restore model (teacher keys excluded), optimizer and RNG state; returns meta."""
    ck = Path(ck)
    meta = read_meta(ck)
    sd = load_file(str(ck / "model.safetensors"))
    own = trainable_state(model)
    missing, unexpected = sorted(set(own) - set(sd)), sorted(set(sd) - set(own))
    if missing or unexpected:
        raise ValueError(
            f"checkpoint {ck} does not fit this model: missing {missing[:8]}, unexpected "
            f"{unexpected[:8]}. Was it saved with another architecture or config?"
        )
    model.load_state_dict(sd, strict=False)
    if optimizer is not None:
        tensors = load_file(str(ck / "optimizer.safetensors"))
        optimizer.load_state_dict(_unflatten_optimizer(tensors, meta["optimizer"]))
        if restore_rng:
            torch.set_rng_state(tensors["rng.torch"])
            if "rng.cuda" in tensors and torch.cuda.is_available():
                torch.cuda.set_rng_state(tensors["rng.cuda"])
    return meta
