"""The data the decision probes need (paper App. C: cue-conflict images, the out-of-distribution
stimulus sets, human responses), judged before ``analyze --probes all`` runs a probe, so that a probe
whose data is not there is skipped with the fix rather than recorded as failed. Each check gets the
probe's ``--param`` values and returns None when the need is met, else what to pass."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Optional

from maskdistill.data.synthetic import SHAPES, TEXTURES
from maskdistill.probes.core.needs import register_need
from maskdistill.probes.decisions.context_reads import ctx_attr, stimulus_root
from maskdistill.probes.decisions.stimuli import find_stimulus_sets

CUE_CONFLICT = "cue_conflict"
OOD_STIMULI = "ood_stimuli"
HUMAN_RESPONSES = "human_responses"


@register_need(CUE_CONFLICT)
def cue_conflict_missing(ctx: Any, params: Mapping[str, Any]) -> Optional[str]:
    try:
        root = stimulus_root(ctx, params.get("stimuli"))
        if root == "builtin":
            return _builtin_head_missing(ctx)
        if "cue-conflict" in find_stimulus_sets(root, strict=False):
            return None
    except (ValueError, FileNotFoundError) as e:
        return str(e)
    return (
        f"no cue-conflict set under {root}: analyse builtin:cue_conflict or pass "
        f"--param shape_bias.stimuli=<folder holding cue-conflict/>"
    )


def _builtin_head_missing(ctx: Any) -> Optional[str]:
    """Shape decisions on the built-in cue-conflict set need a head naming its shapes: a head trained
    on texture labels names textures only, so every decision it makes is a texture decision."""
    info = ctx_attr(ctx, "info", "model_info")
    classes = list(getattr(info, "classes", None) or [])
    if not classes or set(classes) == set(SHAPES[: len(classes)]):
        return None  # no names: the decision mapping says what is possible
    kind = "texture" if set(classes) <= set(TEXTURES) else "other"
    return (
        f"the head of {getattr(info, 'spec', 'the model')} names {kind} classes ({', '.join(classes[:3])}, ...), "
        f"not the shapes of the built-in cue-conflict set, so it makes no shape decisions: measure shape bias "
        f"on a classifier trained on the built-in shape labels (classify/finetune with data.builtin_label=shape)"
    )


@register_need(OOD_STIMULI)
def ood_stimuli_missing(ctx: Any, params: Mapping[str, Any]) -> Optional[str]:
    if params.get("base_images"):
        return None  # the parametric sets are made from these clean images
    try:
        root = stimulus_root(ctx, params.get("stimuli"))
        if root != "builtin":
            find_stimulus_sets(root, strict=False)
            return None
    except (ValueError, FileNotFoundError) as e:
        return str(e)
    return (
        "the built-in data has no out-of-distribution sets: pass --param <probe>.stimuli=<model-vs-human "
        "datasets folder> or --param <probe>.base_images=<clean 16-class images>"
    )


@register_need(HUMAN_RESPONSES)
def human_responses_missing(ctx: Any, params: Mapping[str, Any]) -> Optional[str]:
    root = params.get("raw_data") or ctx_attr(ctx, "raw_data")
    if root is None:
        return "no human responses: pass --param error_consistency.raw_data=<model-vs-human raw-data folder>"
    if not Path(root).is_dir():
        return f"the human responses folder {root} does not exist"
    return None


__all__ = [
    "CUE_CONFLICT",
    "HUMAN_RESPONSES",
    "OOD_STIMULI",
    "cue_conflict_missing",
    "human_responses_missing",
    "ood_stimuli_missing",
]
