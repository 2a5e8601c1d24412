"""What the decision probes cost, for ``analyze --dry-run`` (:mod:`maskdistill.probes.core.plan`):
one forward pass over their stimuli, counted from the file listing (a stimulus is decoded only when
the probe runs). ``ood_accuracy`` and ``error_consistency`` share one evaluation of the stimuli."""

from __future__ import annotations

from pathlib import Path
from typing import Any, List, Mapping, Optional

from maskdistill.data.folder import IMG_EXTENSIONS
from maskdistill.probes.core.plan import Step, analysed_images, register_plan
from maskdistill.probes.decisions.context_reads import stimulus_root
from maskdistill.probes.decisions.stimuli import find_stimulus_sets


def _listed(folder: Path) -> int:
    """Image files under ``folder`` (what the stimulus set will hold before unreadable ones go)."""
    return sum(1 for p in Path(folder).rglob("*") if p.suffix.lower() in IMG_EXTENSIONS and not p.name.startswith("."))


def _batch(ctx: Any, batch_size: Optional[int]) -> int:
    return int(batch_size or ctx.batch_size)


@register_plan("accuracy")
def plan_accuracy(ctx: Any, p: Mapping[str, Any]) -> List[Step]:
    return [Step("accuracy", "forward", 1, analysed_images(ctx), _batch(ctx, p["batch_size"]))]


@register_plan("shape_bias")
def plan_shape_bias(ctx: Any, p: Mapping[str, Any]) -> List[Step]:
    root = stimulus_root(ctx, p["stimuli"])
    if root == "builtin":
        n = int((ctx.data.options or {}).get("images") or p["builtin_images"])
    else:
        n = _listed(find_stimulus_sets(root, strict=False)["cue-conflict"])
    return [Step("shape_bias", "forward", 1, n, _batch(ctx, p["batch_size"]), note="cue-conflict stimuli")]


def _plan_ood(probe: str):
    def plan(ctx: Any, p: Mapping[str, Any]) -> List[Step]:
        from maskdistill.data.distortions import CONDITIONS

        stimuli, datasets, base_images, batch_size = p["stimuli"], p["datasets"], p["base_images"], p["batch_size"]
        on_disk = stimuli or ctx.data.kind == "folder"
        sets = find_stimulus_sets(stimulus_root(ctx, stimuli), strict=False) if on_disk else {}
        wanted = list(datasets) if datasets else sorted(sets)
        n = sum(_listed(sets[d]) for d in wanted if d in sets)
        if base_images:
            base = _listed(Path(base_images))
            n += sum(base * len(CONDITIONS[d]) for d in (datasets or CONDITIONS) if d not in sets and d in CONDITIONS)
        shared = f"evaluation of the stimuli|{stimuli}:{datasets}:{base_images}"
        return [Step(probe, "forward", 1, n, _batch(ctx, batch_size), shared=shared, note="stimuli")]

    return register_plan(probe)(plan)


plan_ood_accuracy = _plan_ood("ood_accuracy")
plan_error_consistency = _plan_ood("error_consistency")

__all__ = ["plan_accuracy", "plan_error_consistency", "plan_ood_accuracy", "plan_shape_bias"]
