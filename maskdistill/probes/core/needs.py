"""What a probe needs from its context (``needs`` of ``@register``) and whether a model and its data
meet it, so that ``analyze`` refuses a named probe with the reason and ``analyze --probes all`` skips
it with the reason instead of recording a failure.

The context judges the needs it knows itself -- ``"attention"`` and ``"tokens"`` (a timm-style ViT
encoder whose attention can be captured), ``"labels"`` (labelled data whose classes map onto the head
by name, :mod:`maskdistill.probes.core.labels`) and ``"classifier"`` (a head with at least as many
outputs as the data has classes); a probe family judges its own (e.g.
``"human_responses"``) through :func:`register_need`. Needs nobody judges are assumed met (the probe
then says what is missing).
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence

NEEDS_KNOWN = ("attention", "tokens", "labels", "classifier")
NeedCheck = Callable[[Any, Mapping[str, Any]], Optional[str]]
_NEED_CHECKS: Dict[str, NeedCheck] = {}


def register_need(name: str) -> Callable[[NeedCheck], NeedCheck]:
    """Let a probe family judge one of its own ``needs``: ``check(ctx, params)`` (``params``: the
    probe's ``--param`` values) returns None when they meet it, else the reason, which
    ``analyze --probes all`` records when it skips the probe."""

    def deco(fn: NeedCheck) -> NeedCheck:
        _NEED_CHECKS[name] = fn
        return fn

    return deco


def _encoder_reasons(ctx: Any, needs: Sequence[str]) -> List[str]:
    from maskdistill.models.capture import attention_modules, find_encoder

    try:
        enc = find_encoder(ctx.model)
        if "attention" in needs:
            attention_modules(enc)
    except (TypeError, ValueError) as e:
        return [str(e)]
    return []


def missing_needs(ctx: Any, needs: Sequence[str], params: Optional[Mapping[str, Any]] = None) -> List[str]:
    """Reasons why ``ctx`` (a probe context) cannot meet ``needs`` (empty when it can), given the
    probe's parameters."""
    reasons: List[str] = []
    if {"attention", "tokens"} & set(needs):
        reasons += _encoder_reasons(ctx, needs)
    if "labels" in needs and not ctx.data.labelled:
        reasons.append(f"the data {ctx.data.spec} has no labels (use class sub-folders or builtin:...)")
    elif "labels" in needs and callable(getattr(ctx, "label_refusal", None)):
        why = ctx.label_refusal()  # labels must name the head's classes (or be stated in its order)
        if why:
            reasons.append(why)
    if "classifier" in needs:
        n = int(ctx.info.num_classes or 0)
        if n <= 0:
            reasons.append(f"{ctx.spec} has no classifier head (num_classes=0)")
        elif ctx.data.labelled and len(ctx.data.classes) > n:
            reasons.append(f"the data has {len(ctx.data.classes)} classes but {ctx.spec} only {n} outputs")
    for need in needs:
        if need in _NEED_CHECKS:
            why = _NEED_CHECKS[need](ctx, params or {})
            if why:
                reasons.append(why)
    return reasons


__all__ = ["NEEDS_KNOWN", "NeedCheck", "missing_needs", "register_need"]
