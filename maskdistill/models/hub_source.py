"""A model in timm's hub layout (``hf-hub:<org>/<name>`` or ``local-dir:<folder>``: ``config.json`` +
``model.safetensors``) as the start of a fine-tune: its real architecture, its weights as a plain
state dict and what it was trained with (normalisation, input size, label names), so that the
fine-tune treats it exactly like a maskdistill run (shared relative position bias, head, pooling)."""

from __future__ import annotations

from typing import Any, Dict, Tuple

import timm
import torch
from timm.models._hub import (
    load_model_config_from_hf,
    load_model_config_from_path,
    load_state_dict_from_hf,
    load_state_dict_from_path,
)

from maskdistill.models.loading import check_timm_name

# Arguments a fine-tune sets itself (or that describe the saved input, not the network).
_CREATE_ONLY = ("img_size", "num_classes", "pretrained_model_args")


def hub_config(name: str) -> Tuple[str, Dict[str, Any], Dict[str, Any]]:
    """(architecture, model_args, pretrained_cfg) of a hub name, read from its ``config.json``
    (``hf-hub:`` downloads it through timm)."""
    check_timm_name(name)
    scheme, _, target = name.partition(":")
    load = load_model_config_from_path if scheme == "local-dir" else load_model_config_from_hf
    pretrained_cfg, arch, model_args = load(target)
    return arch, dict(model_args or {}), dict(pretrained_cfg or {})


def hub_weights(name: str) -> Dict[str, torch.Tensor]:
    """The state dict of a hub name, read by timm's own loaders (no model is built, so the random
    state a fine-tune draws its new head from is the same as for a run folder)."""
    scheme, _, target = name.partition(":")
    return load_state_dict_from_path(target) if scheme == "local-dir" else load_state_dict_from_hf(target)


def hub_source(name: str) -> Tuple[str, Dict[str, torch.Tensor], Dict[str, Any]]:
    """name -> (timm arch, state dict, info: kwargs/mean/std/img_size/classes), the form of a
    maskdistill run's exported backbone."""
    arch, model_args, cfg = hub_config(name)
    sd = hub_weights(name)
    size = cfg.get("input_size") or (3, 224, 224)
    info = {
        "kwargs": {k: v for k, v in model_args.items() if k not in _CREATE_ONLY},
        "mean": list(cfg.get("mean") or timm.data.IMAGENET_DEFAULT_MEAN),
        "std": list(cfg.get("std") or timm.data.IMAGENET_DEFAULT_STD),
        "img_size": int(size[-1]),
        "classes": list(cfg.get("label_names") or []),
    }
    return arch, sd, info


__all__ = ["hub_config", "hub_source", "hub_weights"]
