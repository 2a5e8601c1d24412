"""Registered decision probes (paper Sec. 5 and App. C): ``shape_bias`` (Figs. 8a, 11),
``ood_accuracy`` and ``error_consistency`` with humans on the 17 out-of-distribution sets (Fig. 12).

What they read from the probe context is in ``context_reads.py``; the data they need is judged by
``needs.py``. Decision mapping: 1000 outputs -> the 16-class ImageNet mapping (mean probability over
each category's ImageNet indices); classes equal to the data's label set -> direct; otherwise an
error saying which mapping is possible. Partial stimulus copies are normal: every comparison with
humans uses the trials whose images are present. Conditions excluded from the summaries: the
undistorted control of every parametric set and every condition where humans are at or below 0.2.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, Sequence

import numpy as np
import pandas as pd

from maskdistill.data.builtin_conflict import BuiltinCueConflict
from maskdistill.probes.core.intervals import attach
from maskdistill.probes.core.registry import ProbeResult, register
from maskdistill.probes.decisions.context_reads import (
    batch_size_of,
    human_responses,
    model_of,
    result_meta,
    save_responses,
    stimulus_root,
    world_of,
)
from maskdistill.probes.decisions.evaluate import evaluate_stimuli
from maskdistill.probes.decisions.intervals import (
    accuracy_replicates,
    condition_masks,
    consistency_statistic,
    shape_bias_replicates,
)
from maskdistill.probes.decisions.model_responses import ResponseRequest, model_responses
from maskdistill.probes.decisions.needs import CUE_CONFLICT, HUMAN_RESPONSES, OOD_STIMULI
from maskdistill.probes.decisions.ood_summary import (
    accuracy_table,
    dataset_accuracy,
    drop_excluded,
    excluded_conditions,
    pairwise_consistency,
    summarise,
)
from maskdistill.probes.decisions.shape_bias import shape_bias
from maskdistill.probes.decisions.stimuli import find_stimulus_sets


def _cue_conflict_responses(
    ctx: Any,
    root: str,
    batch_size: Optional[int],
    max_per_class: Optional[int],
    builtin_images: int,
    builtin_image_size: Optional[int],
    seed: int,
) -> pd.DataFrame:
    """The model's responses on the built-in cue-conflict set (its size, images and seed from the
    analysis data's options when it is built-in) or on the cue-conflict folder under ``root``."""
    bs = batch_size_of(ctx, batch_size)
    if root != "builtin":
        if "cue-conflict" not in find_stimulus_sets(root, strict=False):
            raise ValueError(
                f"no cue-conflict set under {root} (a folder named cue-conflict or style-transfer-preprocessed-512)."
            )
        req = ResponseRequest(root, ["cue-conflict"], None, bs, max_per_class, seed)
        return model_responses(ctx, req)  # shared with the other decision probes
    model, info, device, name = model_of(ctx)
    opts = dict(getattr(getattr(ctx, "data", None), "options", None) or {})
    st = BuiltinCueConflict(
        int(opts.get("images") or builtin_images),
        image_size=int(builtin_image_size or opts.get("size") or info.img_size),
        seed=int(opts.get("seed", seed)),
        num_classes=len(info.classes) if info.classes else 10,
    )
    return evaluate_stimuli(model, info, st, name, device, bs, world=world_of(ctx))


def _shape_bias_table(resp: pd.DataFrame) -> pd.DataFrame:
    """Per shape category and overall: shape bias and the fractions of shape and texture decisions
    over the cue-conflict trials, and the accuracy (decision = shape category) over all images."""
    sb = shape_bias(resp, by=())
    dataset = str(resp["dataset"].iloc[0])
    correct = resp.assign(c=resp["object_response"] == resp["category"])
    acc = correct.groupby("category")["c"].agg(["mean", "size"])
    acc.loc["all"] = [correct["c"].mean(), len(correct)]
    rows: List[Dict[str, Any]] = []
    for r in sb.itertuples(index=False):
        for m in ("shape_bias", "fraction_shape", "fraction_texture"):
            rows.append(dict(dataset=dataset, category=r.category, metric=m, value=getattr(r, m), n_trials=r.n_trials))
        mean, size = float(acc.loc[r.category, "mean"]), int(acc.loc[r.category, "size"])
        rows.append(dict(dataset=dataset, category=r.category, metric="accuracy", value=mean, n_trials=size))
    return pd.DataFrame(rows)


@register("shape_bias", needs=("classifier", CUE_CONFLICT), figure="Figs. 8a, 11")
def shape_bias_probe(
    ctx: Any,
    stimuli: Optional[str] = None,
    batch_size: Optional[int] = None,
    max_per_class: Optional[int] = None,
    builtin_images: int = 450,
    builtin_image_size: Optional[int] = None,
    seed: int = 0,
    responses_dir: Optional[str] = None,
) -> ProbeResult:
    """Shape bias on cue-conflict images (overall and per shape category) and the 16-class accuracy
    (decision = shape category). ``stimuli="builtin"``: the built-in data's native cue-conflict set."""
    name = model_of(ctx)[3]
    root = stimulus_root(ctx, stimuli)
    resp = _cue_conflict_responses(ctx, root, batch_size, max_per_class, builtin_images, builtin_image_size, seed)
    save_responses(resp, responses_dir)
    meta = result_meta(
        ctx,
        stimuli=str(root),
        images=len(resp),
        max_per_class=max_per_class,
        texture_label="from the file name <shape><i>-<texture><j>.png",
        dropped="shape == texture images",
        **resp.attrs.get("decision_mapping", {}),
    )
    table, arrays = _shape_bias_table(resp), {}
    boot = getattr(ctx, "bootstrap", None)
    if boot is not None:  # over the stimuli, in evaluation order (paired for models shown the same set)
        cats = list(table.loc[table["metric"] == "shape_bias", "category"])
        for metric, reps in shape_bias_replicates(resp, cats, boot).items():
            attach(table, arrays, metric, reps, boot)
        meta["bootstrap"] = boot.describe(len(resp), unit="stimulus")
    return ProbeResult("shape_bias", name, table, meta, arrays)


def _ood_meta(ctx: Any, resp: pd.DataFrame, ds: List[str], excluded: pd.DataFrame, **extra: Any) -> Dict[str, Any]:
    """What both OOD probes record: datasets, excluded conditions, images and the decision mapping."""
    mapping = resp.attrs.get("decision_mapping", {})
    boot = getattr(ctx, "bootstrap", None)
    if boot is not None:
        extra["bootstrap"] = boot.describe(len(resp), unit="trial")
    n = len(resp)
    return result_meta(ctx, datasets=ds, excluded=excluded.to_dict("records"), images=n, n_images=n, **extra, **mapping)


# (ctx, the model's responses, raw_data, max_per_class) -> the probe's result
Scorer = Callable[[Any, pd.DataFrame, Optional[str], Optional[int]], ProbeResult]


def _ood_probe(score: Scorer) -> Callable[..., ProbeResult]:
    """A probe on the model's responses to the out-of-distribution sets, with the parameters both OOD
    probes take: stimuli, datasets, base_images (clean images for the parametric sets), raw_data (the
    human responses), batch_size, max_per_class, seed, responses_dir (write the responses there)."""

    def probe(
        ctx: Any,
        stimuli: Optional[str] = None,
        datasets: Optional[Sequence[str]] = None,
        base_images: Optional[str] = None,
        raw_data: Optional[str] = None,
        batch_size: Optional[int] = None,
        max_per_class: Optional[int] = None,
        seed: int = 0,
        responses_dir: Optional[str] = None,
    ) -> ProbeResult:
        req = ResponseRequest(stimuli, datasets, base_images, batch_size, max_per_class, seed)
        resp = model_responses(ctx, req)
        save_responses(resp, responses_dir)
        return score(ctx, resp, raw_data, max_per_class)

    probe.__name__ = probe.__qualname__ = score.__name__.lstrip("_")
    probe.__doc__ = score.__doc__
    probe.__module__ = score.__module__
    return probe


def _ood_accuracy(ctx: Any, resp: pd.DataFrame, raw_data: Optional[str], max_per_class: Optional[int]) -> ProbeResult:
    """16-class accuracy per dataset and condition; per dataset pooled over its kept conditions (controls
    and, when ``raw_data`` holds the human files, conditions where humans are at or below 0.2 are left
    out); OOD accuracy = the mean over datasets (``dataset="all"``)."""
    name = str(resp["subj"].iloc[0])
    ds = sorted(resp["dataset"].unique())
    excluded = excluded_conditions(human_responses(ctx, raw_data, ds), ds)
    per_cond = accuracy_table(resp).drop(columns="subj").rename(columns={"accuracy": "value"})
    per_ds = dataset_accuracy(resp, excluded).drop(columns="subj").rename(columns={"accuracy": "value"})
    overall = dict(dataset="all", condition="kept", metric="ood_accuracy", value=float(per_ds["value"].mean()))
    overall["n_trials"] = int(per_ds["n_trials"].sum())
    parts = [per_cond.assign(metric="accuracy"), per_ds.assign(condition="kept", metric="accuracy")]
    table = pd.concat(parts + [pd.DataFrame([overall])], ignore_index=True)
    meta = _ood_meta(ctx, resp, ds, excluded, max_per_class=max_per_class)
    arrays: Dict[str, Any] = {}
    boot = getattr(ctx, "bootstrap", None)
    if boot is not None:  # over the trials: per row, and the mean over datasets of the kept accuracies
        correct = (resp["object_response"] == resp["category"]).to_numpy(float)
        kept = resp.index.isin(drop_excluded(resp, excluded).index)  # (n,) trials outside excluded conditions
        rows = table.loc[table["metric"] == "accuracy"]
        pooled = (rows["condition"] == "kept").to_numpy()  # the per-dataset rows
        masks = condition_masks(resp, rows)
        masks[:, pooled] &= kept[:, None]
        reps = accuracy_replicates(correct, masks, boot)
        attach(table, arrays, "accuracy", reps, boot)
        attach(table, arrays, "ood_accuracy", reps[:, pooled].mean(axis=1), boot)
    return ProbeResult("ood_accuracy", name, table, meta, arrays)


def _consistency_table(
    resp: pd.DataFrame, humans: pd.DataFrame, pairs: pd.DataFrame, name: str, excluded: pd.DataFrame
) -> pd.DataFrame:
    """The model's pairs with every human (per dataset and condition) and the Fig. 12 summary rows of
    the model and of the human-human baseline (``human="all"``)."""
    model_pairs = pairs.loc[pairs["observer"] == name]
    metrics = ["kappa", "observed", "expected", "accuracy_observer", "accuracy_human"]
    long = model_pairs.melt(
        id_vars=["human", "dataset", "condition", "n_trials"], value_vars=metrics, var_name="metric", value_name="value"
    )
    summ = summarise(pairs, pd.concat([resp, humans], ignore_index=True), excluded)
    summ = summ.loc[summ["observer"].isin([name, "humans"])]
    srows = summ.melt(
        id_vars=["observer"],
        value_vars=["ood_accuracy", "observed_consistency", "error_consistency", "accuracy_difference"],
        var_name="metric",
        value_name="value",
    )
    srows = srows.assign(human="all", dataset="all", condition="kept")
    return pd.concat([long.assign(observer=name), srows], ignore_index=True)


def _error_consistency_probe(
    ctx: Any, resp: pd.DataFrame, raw_data: Optional[str], max_per_class: Optional[int]
) -> ProbeResult:
    """Error consistency (kappa), observed and expected consistency with every human observer per dataset
    and condition on the shared trials (rows with ``human`` set), and the Fig. 12 summary (``human="all"``):
    the model's and the human-human baseline's OOD accuracy, observed consistency, error consistency
    and accuracy difference (controls and conditions where humans are at or below 0.2 excluded)."""
    name = str(resp["subj"].iloc[0])
    ds = sorted(resp["dataset"].unique())
    humans = human_responses(ctx, raw_data, ds)
    if humans is None:
        raise ValueError(
            "error consistency needs human responses: pass raw_data=<model-vs-human raw-data folder> "
            "(or give the probe context a .raw_data folder) holding " + ", ".join(ds) + "."
        )
    pairs = pairwise_consistency(resp, humans)
    if not (pairs["observer"] == name).any():
        raise ValueError(
            f"no trial of {name} matches a human trial in {ds}: are the stimuli model-vs-human's images "
            f"(image ids must match the human files)?"
        )
    excluded = excluded_conditions(humans, ds)
    meta = _ood_meta(
        ctx,
        resp,
        ds,
        excluded,
        humans=sorted(humans["subj"].unique()),
        max_per_class=max_per_class,
        trials="pairs use the trials both answered (partial stimulus copies are normal)",
        aggregation="mean over conditions, then humans, then datasets",
    )
    table, arrays = _consistency_table(resp, humans, pairs, name, excluded), {}
    boot = getattr(ctx, "bootstrap", None)
    if boot is not None:  # the model's summary row over its trials; the human baseline has no interval
        rows = table.loc[table["metric"] == "error_consistency", "observer"].to_numpy()
        stat = consistency_statistic(resp, drop_excluded(humans, excluded), boot.counts(len(resp)))
        reps = np.where(rows[None, :] == name, stat[:, None], np.nan)
        attach(table, arrays, "error_consistency", reps, boot)
    return ProbeResult("error_consistency", name, table, meta, arrays)


ood_accuracy = register("ood_accuracy", needs=("classifier", OOD_STIMULI), figure="Fig. 12")(_ood_probe(_ood_accuracy))
error_consistency_probe = register(
    "error_consistency", needs=("classifier", OOD_STIMULI, HUMAN_RESPONSES), figure="Fig. 12"
)(_ood_probe(_error_consistency_probe))


__all__ = ["error_consistency_probe", "ood_accuracy", "shape_bias_probe"]
