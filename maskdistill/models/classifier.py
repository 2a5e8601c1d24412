"""Build a classifier for fine-tuning from any model spec: a maskdistill run or checkpoint (an MD
student, a teacher, an earlier fine-tune) or ``timm:<name>[@weights]`` (paper Sec. 4: fine-tuning a
teacher, an MD student or any ViT with the same recipe).

What a user expects when going from pre-training to fine-tuning (BEiT/BEiT v2 practice):
- the pre-training decoder and mask token are not part of the exported backbone, so they are gone;
- a shared relative position bias (BEiT pre-training) becomes one table per block, each a copy of
  the shared one, so the network computes exactly the same function before fine-tuning starts;
- a missing or differently sized head is re-initialised, with a warning;
- switching between CLS and mean pooling moves the trained final norm to where the pooling
  expects it (``norm`` before CLS pooling, ``fc_norm`` after mean pooling);
- any other key that does not fit is an error listing missing and unexpected keys.
"""

from __future__ import annotations

import logging
import re
from typing import Any, Dict, Optional, Sequence, Tuple

import timm
import torch
from safetensors.torch import load_file
from timm.models.beit import Beit
from torch import nn

from maskdistill.config.spec_forms import NETWORK_SPEC_FORMS, is_hub_name
from maskdistill.errors import UsageError
from maskdistill.models.loading import check_timm_name, create_timm, load_weights, read_state_dict
from maskdistill.models.spec import parse_spec

log = logging.getLogger(__name__)

SHARED_REL = "rel_pos_bias.relative_position_bias_table"
# Keys that are set at creation, not taken over from the source model.
_OVERRIDDEN = ("num_classes", "img_size", "drop_path_rate", "global_pool")


def _source(spec: str) -> Tuple[str, Optional[Dict[str, torch.Tensor]], Dict[str, Any]]:
    """spec -> (timm arch, state dict or None for hub weights, saved info: kwargs/mean/std/classes)."""
    parsed = parse_spec(spec).without_options("model.spec of a fine-tune")
    if parsed.kind == "timm" and is_hub_name(parsed.name):  # an exported folder: like a run's backbone
        from maskdistill.models.hub_source import hub_source

        return hub_source(parsed.name)
    if parsed.kind == "timm":
        check_timm_name(parsed.name)
        return parsed.name, (read_state_dict(parsed.weights) if parsed.weights else None), {"kwargs": {}}
    if parsed.kind != "run":
        raise UsageError(
            f"{spec}: a classifier starts from {NETWORK_SPEC_FORMS}; {parsed.kind} specs are teachers only."
        )
    from maskdistill.runs.checkpoint import find_checkpoint, read_meta

    ck = find_checkpoint(parsed.name)
    info = read_meta(ck).get("backbone")
    if not info or not (ck / "backbone.safetensors").is_file():
        raise ValueError(
            f"checkpoint {ck} has no exported backbone (backbone.safetensors + meta.json "
            f"'backbone'); it was not written by maskdistill pretrain/classify/finetune."
        )
    return info["arch"], load_file(str(ck / "backbone.safetensors")), info


def expand_shared_rel_pos_bias(sd: Dict[str, torch.Tensor], depth: int) -> Dict[str, torch.Tensor]:
    """BEiT's shared relative position bias -> one identical table per block (same outputs)."""
    sd = dict(sd)
    table = sd.pop(SHARED_REL)
    for i in range(depth):
        sd[f"blocks.{i}.attn.relative_position_bias_table"] = table.clone()
    return {k: v for k, v in sd.items() if not k.startswith("rel_pos_bias.")}


def _move_final_norm(sd: Dict[str, torch.Tensor], model: nn.Module) -> Dict[str, torch.Tensor]:
    own = model.state_dict()
    for src, dst in (("norm", "fc_norm"), ("fc_norm", "norm")):
        if (
            f"{src}.weight" in sd
            and f"{src}.weight" not in own
            and f"{dst}.weight" in own
            and f"{dst}.weight" not in sd
        ):
            log.info("moving the trained final norm %s -> %s (pooling changed)", src, dst)
            sd = {(dst + k[len(src) :] if k.startswith(src + ".") else k): v for k, v in sd.items()}
    return sd


def _drop_unfit_head(
    sd: Dict[str, torch.Tensor],
    model: nn.Module,
    source: str,
    saved_classes: Sequence[str] = (),
    classes: Sequence[str] = (),
) -> Dict[str, torch.Tensor]:
    """Keep the checkpoint's head only when it fits: same shapes and, where both sides name their
    classes, the same classes in the same order (a texture head is no start for shape labels)."""
    own = model.state_dict()
    head = [k for k in own if k.startswith("head.")]
    fits = bool(head) and all(k in sd and sd[k].shape == own[k].shape for k in head)
    other = fits and bool(saved_classes) and bool(classes) and list(saved_classes) != list(classes)
    if head and not fits:
        had = [f"{k} {tuple(sd[k].shape)}" for k in sd if k.startswith("head.")]
        log.warning(
            "%s: the classifier head is re-initialised for %d classes (%s)",
            source,
            model.num_classes,
            f"checkpoint head: {', '.join(had)}" if had else "no head in the checkpoint",
        )
    elif other:
        log.warning(
            "%s: the classifier head is re-initialised: it was trained on other classes (%s) than the data's (%s)",
            source,
            _short(saved_classes),
            _short(classes),
        )
    if not fits or other:
        sd = {k: v for k, v in sd.items() if not k.startswith("head.")}
    return sd


def check_kept_head(num_classes: int, saved_classes: Sequence[str], classes: Sequence[str], source: str) -> None:
    """A head kept from a timm source (no recorded classes) of an ImageNet size is named by timm's
    ImageNet metadata; the data's labels (class folders in sorted order) must be those names in that
    order, else training and top-1 would score output k against the k-th folder."""
    from maskdistill.models.label_names import head_names

    names = head_names(num_classes) if classes and not saved_classes else None
    if names is None or list(names.names) == list(classes):
        return
    idx = [names.index(c) for c in classes]
    how = "are a subset of its classes" if all(i is not None for i in idx) else "are not its classes"
    raise UsageError(
        f"{source}: its {num_classes}-class head is kept ({names.source}), but the data's classes "
        f"({_short(list(classes))}) {how} in its order, so label k would be scored as output k; set "
        f"model.num_classes=0 (a new head for the data's classes) or use all {num_classes} classes as folders."
    )


def _short(names: Sequence[str], n: int = 4) -> str:
    return ", ".join(names[:n]) + (f", ... {len(names)} in all" if len(names) > n else "")


def _create(arch: str, create: Dict[str, Any], inherited: set) -> nn.Module:
    """``timm.create_model``; when the user asked for another architecture than the checkpoint's,
    settings inherited from the checkpoint that this architecture does not take are dropped, so
    that loading reports the real mismatch (missing/unexpected keys)."""
    create = dict(create)
    while True:
        try:
            return timm.create_model(arch, pretrained=False, **create)
        except TypeError as e:
            m = re.search(r"unexpected keyword argument '(\w+)'", str(e))
            if not m or m.group(1) not in inherited:
                raise
            create.pop(m.group(1))


def build_classifier_model(
    spec: str,
    num_classes: int,
    img_size: int,
    drop_path: float = 0.0,
    global_pool: str = "",
    rel_pos_bias: str = "per_block",
    arch: str = "",
    classes: Sequence[str] = (),
    **extra: Any,
) -> Tuple[nn.Module, Dict[str, Any]]:
    """-> (timm model, info for the exported backbone: arch, kwargs, mean, std). ``arch`` (optional)
    names the architecture the user expects; loading a checkpoint of another one is an error.
    ``classes``: the data's class names; a saved head trained on other classes is re-initialised."""
    src_arch, sd, info = _source(spec)
    arch = arch or src_arch
    kwargs = {k: v for k, v in dict(info.get("kwargs", {})).items() if k not in _OVERRIDDEN}
    kwargs.update(extra)
    shared = sd is not None and SHARED_REL in sd
    if shared and rel_pos_bias == "per_block":
        kwargs.update(use_shared_rel_pos_bias=False, use_rel_pos_bias=True)
    create = dict(kwargs, num_classes=num_classes, img_size=img_size, drop_path_rate=drop_path)
    if global_pool:
        create["global_pool"] = global_pool
    if sd is None:  # timm hub weights (needs network); timm re-initialises a head of another size
        model = create_timm(arch, pretrained=True, **create)
        if int((model.pretrained_cfg or {}).get("num_classes") or 0) == num_classes:
            check_kept_head(num_classes, (), classes, spec)
    else:
        model = _create(arch, create, inherited=set(kwargs) - set(extra) if arch != src_arch else set())
        if shared and rel_pos_bias == "per_block" and isinstance(model, Beit):
            sd = expand_shared_rel_pos_bias(sd, len(model.blocks))
        sd = _drop_unfit_head(_move_final_norm(sd, model), model, spec, info.get("classes") or (), classes)
        if any(k.startswith("head.") for k in sd):
            check_kept_head(num_classes, info.get("classes") or (), classes, spec)
        head = tuple(k.rsplit(".", 1)[0] for k in model.state_dict() if k.startswith("head.") and k not in sd)
        load_weights(model, sd, spec, ignore_prefixes=head)
    dc = model.pretrained_cfg or {}
    out = {
        "arch": arch,
        "kwargs": dict(
            kwargs, num_classes=num_classes, img_size=img_size, **({"global_pool": global_pool} if global_pool else {})
        ),
        "mean": list(info.get("mean") or dc.get("mean", (0.485, 0.456, 0.406))),
        "std": list(info.get("std") or dc.get("std", (0.229, 0.224, 0.225))),
        "img_size": img_size,
        "source": str(spec),
    }
    return model, out


__all__ = ["build_classifier_model", "expand_shared_rel_pos_bias"]
