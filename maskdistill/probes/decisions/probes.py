"""Decision probes (paper Sec. 5 and App. C: shape bias, Figs. 8a and 11; OOD accuracy and error
consistency with humans on the 17 out-of-distribution sets, Fig. 12; ``docs/PROBES.md``, "Decisions"):
``shape_bias``, ``ood_accuracy`` and ``error_consistency``, registered for ``maskdistill analyze``.

What they need from the probe context (duck-typed; any object with these attributes works):

- ``ctx.model``: ``model(x) -> logits (B, K)`` on images normalised with the model's mean/std;
- ``ctx.info`` (or ``ctx.model_info``): its ``ModelInfo`` (``mean, std, img_size, crop_pct,
  interpolation``; ``classes`` for maskdistill classifiers, which then decide directly);
- optional ``ctx.device`` (default cpu), ``ctx.name`` (default "model"), ``ctx.batch_size``;
- where the data is, unless passed as probe parameters: ``ctx.stimuli`` (a stimulus root in
  model-vs-human's layout, see ``data/stimuli.py``, or ``"builtin"`` for the native cue-conflict set of
  the built-in data) and ``ctx.raw_data`` (model-vs-human's ``raw-data`` folder of human responses).

Decision mapping: 1000 outputs -> 16-class ImageNet mapping; classes equal to the data's label set ->
direct; otherwise an error saying which mapping is possible. Partial stimulus copies are normal: every
comparison with humans uses the trials whose images are present.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence

import pandas as pd
import torch

from maskdistill.data.builtin_conflict import BuiltinCueConflict
from maskdistill.probes.core.context import register_need
from maskdistill.probes.core.registry import ProbeResult, register
from maskdistill.probes.decisions.consistency import Consistency, error_consistency, kappa
from maskdistill.probes.decisions.evaluate import DecisionRecorder, evaluate_stimuli, input_transform
from maskdistill.probes.decisions.imagenet16 import (
    DecisionMapping,
    categories16,
    decision_mapping_for,
    imagenet16,
    sixteen_class_probabilities,
)
from maskdistill.probes.decisions.ood_summary import (
    CONTROL_CONDITIONS,
    DATASETS,
    accuracy_table,
    dataset_accuracy,
    excluded_conditions,
    human_accuracy,
    pairwise_consistency,
    summarise,
)
from maskdistill.probes.decisions.responses import (
    COLUMNS,
    condition_key,
    image_id,
    make_responses,
    read_responses,
    write_responses,
)
from maskdistill.probes.decisions.shape_bias import shape_bias, texture_category
from maskdistill.probes.decisions.stimuli import PARAMETRIC, find_stimulus_sets, read_stimuli


def _ctx(ctx: Any, *names: str, default: Any = None) -> Any:
    for n in names:
        v = getattr(ctx, n, None)
        if v is not None:
            return v
    return default


def _model(ctx: Any):
    model = _ctx(ctx, "model")
    info = _ctx(ctx, "info", "model_info")
    if model is None or info is None:
        raise TypeError("the decision probes need ctx.model (logits) and ctx.info (ModelInfo: mean/std/img_size).")
    if hasattr(model, "eval"):
        model.eval()
    size = getattr(ctx, "img_size", None)  # ProbeContext: the side the patch embedding really takes
    if size and int(size) != int(info.img_size) and dataclasses.is_dataclass(info):
        info = dataclasses.replace(info, img_size=int(size))
    return model, info, torch.device(_ctx(ctx, "device", default="cpu")), str(_ctx(ctx, "name", default="model"))


def _stimulus_root(ctx: Any, stimuli: Optional[str]) -> Any:
    """The probe parameter, else ``ctx.stimuli``, else the analysis data (a folder, or ``builtin``)."""
    root = stimuli if stimuli is not None else _ctx(ctx, "stimuli", "stimulus_root")
    data = getattr(ctx, "data", None)
    if root is None and data is not None and getattr(data, "kind", None) in ("builtin", "folder"):
        root = "builtin" if data.kind == "builtin" else str(data.path)
    if root is None:
        raise ValueError(
            "no stimuli: pass stimuli=<folder in model-vs-human layout> (or 'builtin' for the built-in "
            "cue-conflict set), or give the probe context a .stimuli folder."
        )
    return str(root)


def _meta(ctx: Any, **extra: Any) -> Dict[str, Any]:
    return ctx.meta(**extra) if callable(getattr(ctx, "meta", None)) else extra


def _save(responses: pd.DataFrame, responses_dir: Optional[str]) -> None:
    if responses_dir:
        for _, g in responses.groupby(["dataset", "subj"]):
            write_responses(g, responses_dir)


def model_responses(
    ctx: Any,
    stimuli: Optional[str] = None,
    datasets: Optional[Sequence[str]] = None,
    base_images: Optional[str] = None,
    batch_size: Optional[int] = None,
    max_per_class: Optional[int] = None,
    seed: int = 0,
) -> pd.DataFrame:
    """The model's response table on every requested set under the stimulus root; parametric sets not on
    disk are made from ``base_images`` (a folder of clean ``<category>/<image>`` pictures) with every
    published condition (``data/distortions.py``)."""
    memo = getattr(ctx, "memo", None)
    key = (
        f"decisions:{_root_or_none(ctx, stimuli, base_images)}:{datasets and sorted(datasets)}:{base_images}:"
        f"{max_per_class}:{seed}"
    )
    if isinstance(memo, dict) and key in memo:  # ood_accuracy and error_consistency share one evaluation
        return memo[key]
    out = _model_responses(ctx, stimuli, datasets, base_images, batch_size, max_per_class, seed)
    if isinstance(memo, dict):
        memo[key] = out
    return out


def _root_or_none(ctx: Any, stimuli: Optional[str], base_images: Optional[str]) -> Optional[str]:
    """The stimulus root; none is needed when every set is made from ``base_images``."""
    try:
        return _stimulus_root(ctx, stimuli)
    except ValueError:
        if base_images:
            return None
        raise


def _stimulus_sets(root: Optional[str], strict: bool, base_images: Optional[str]) -> Dict[str, Path]:
    if root is None or root == "builtin":
        return {}
    try:
        return find_stimulus_sets(root, strict=strict)
    except ValueError:
        if base_images and not strict:  # e.g. the analysis data folder: the parametric sets come from base_images
            return {}
        raise


def _model_responses(
    ctx: Any,
    stimuli: Optional[str],
    datasets: Optional[Sequence[str]],
    base_images: Optional[str],
    batch_size: Optional[int],
    max_per_class: Optional[int],
    seed: int,
) -> pd.DataFrame:
    from maskdistill.data.distortions import CONDITIONS, apply_condition, mean_amplitude_spectrum

    model, info, device, name = _model(ctx)
    bs = int(batch_size or _ctx(ctx, "batch_size", default=32))
    root = _root_or_none(ctx, stimuli, base_images)
    sets = _stimulus_sets(root, not datasets, base_images)  # named datasets: other folders do not matter
    wanted = (
        list(datasets) if datasets else sorted(sets) + ([d for d in PARAMETRIC if d not in sets] if base_images else [])
    )
    frames = []
    for ds in wanted:
        if ds in sets:
            st = read_stimuli(sets[ds], ds).subset(max_per_class)
            frames.append(evaluate_stimuli(model, info, st, name, device, bs))
        elif ds in CONDITIONS and base_images:
            base = read_stimuli(base_images, ds).subset(max_per_class)
            gen = torch.Generator().manual_seed(seed)
            target = None
            if ds == "power-equalisation":
                tf = input_transform(int(info.img_size), float(info.crop_pct or 1.0), str(info.interpolation))
                target = mean_amplitude_spectrum(
                    torch.stack([tf(base.load(i)) for i in range(len(base))]).float() / 255
                )
            for cond in CONDITIONS[ds]:
                fn = lambda x, d=ds, c=cond: apply_condition(d, x.cpu(), c, gen, target).to(x.device)
                frames.append(evaluate_stimuli(model, info, base, name, device, bs, distort=fn, condition=cond))
        else:
            raise ValueError(
                f"no stimuli for dataset {ds!r} under {root}"
                + ("" if base_images else " (parametric sets need base_images=<folder of clean 16-class images>)")
                + "."
            )
    if not frames:
        raise ValueError(f"no stimulus sets to evaluate under {root}.")
    return pd.concat(frames, ignore_index=True)


# What ``analyze --probes all`` checks before it runs a decision probe, so that a probe whose data is
# not there is skipped with the fix rather than recorded as failed (``params``: its --param values).
@register_need("cue_conflict")
def _cue_conflict_missing(ctx: Any, params: Mapping[str, Any]) -> Optional[str]:
    try:
        root = _stimulus_root(ctx, params.get("stimuli"))
        if root == "builtin" or "cue-conflict" in find_stimulus_sets(root, strict=False):
            return None
    except (ValueError, FileNotFoundError) as e:
        return str(e)
    return (
        f"no cue-conflict set under {root}: analyse builtin:cue_conflict or pass "
        f"--param shape_bias.stimuli=<folder holding cue-conflict/>"
    )


@register_need("ood_stimuli")
def _ood_stimuli_missing(ctx: Any, params: Mapping[str, Any]) -> Optional[str]:
    if params.get("base_images"):
        return None  # the parametric sets are made from these clean images
    try:
        root = _stimulus_root(ctx, params.get("stimuli"))
        if root != "builtin":
            find_stimulus_sets(root, strict=False)
            return None
    except (ValueError, FileNotFoundError) as e:
        return str(e)
    return (
        "the built-in data has no out-of-distribution sets: pass --param <probe>.stimuli=<model-vs-human "
        "datasets folder> or --param <probe>.base_images=<clean 16-class images>"
    )


@register_need("human_responses")
def _human_responses_missing(ctx: Any, params: Mapping[str, Any]) -> Optional[str]:
    root = params.get("raw_data") or _ctx(ctx, "raw_data")
    if root is None:
        return "no human responses: pass --param error_consistency.raw_data=<model-vs-human raw-data folder>"
    if not Path(root).is_dir():
        return f"the human responses folder {root} does not exist"
    return None


@register("shape_bias", needs=("classifier", "cue_conflict"), figure="Figs. 8a, 11")
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
    model, info, device, name = _model(ctx)
    root = _stimulus_root(ctx, stimuli)
    bs = int(batch_size or _ctx(ctx, "batch_size", default=32))
    if root == "builtin":
        opts = dict(getattr(getattr(ctx, "data", None), "options", None) or {})
        size = int(builtin_image_size or opts.get("size") or info.img_size)
        st = BuiltinCueConflict(
            int(opts.get("images") or builtin_images),
            size,
            seed=int(opts.get("seed", seed)),
            num_classes=len(info.classes) if info.classes else 10,
        )
        resp = evaluate_stimuli(model, info, st, name, device, bs)
    else:
        if "cue-conflict" not in find_stimulus_sets(root, strict=False):
            raise ValueError(
                f"no cue-conflict set under {root} (a folder named cue-conflict or style-transfer-preprocessed-512)."
            )
        resp = model_responses(ctx, root, ["cue-conflict"], None, bs, max_per_class, seed)  # shared with the others
    _save(resp, responses_dir)
    sb = shape_bias(resp, by=())
    dataset = str(resp["dataset"].iloc[0])
    correct = resp.assign(c=resp["object_response"] == resp["category"])
    acc = correct.groupby("category")["c"].agg(["mean", "size"])
    acc.loc["all"] = [correct["c"].mean(), len(correct)]
    rows: List[Dict[str, Any]] = []
    for r in sb.itertuples(index=False):
        for m in ("shape_bias", "fraction_shape", "fraction_texture"):  # over the cue-conflict trials
            rows.append(
                {
                    "dataset": dataset,
                    "category": r.category,
                    "metric": m,
                    "value": getattr(r, m),
                    "n_trials": r.n_trials,
                }
            )
        rows.append(
            {
                "dataset": dataset,
                "category": r.category,
                "metric": "accuracy",  # over all images
                "value": float(acc.loc[r.category, "mean"]),
                "n_trials": int(acc.loc[r.category, "size"]),
            }
        )
    meta = _meta(
        ctx,
        stimuli=str(root),
        images=len(resp),
        max_per_class=max_per_class,
        texture_label="from the file name <shape><i>-<texture><j>.png",
        dropped="shape == texture images",
        **resp.attrs.get("decision_mapping", {}),
    )
    return ProbeResult("shape_bias", name, pd.DataFrame(rows), meta)


def _humans(ctx: Any, raw_data: Optional[str], datasets: Sequence[str]) -> Optional[pd.DataFrame]:
    root = raw_data if raw_data is not None else _ctx(ctx, "raw_data")
    if root is None:
        return None
    folders = [Path(root) / d for d in datasets if (Path(root) / d).is_dir()]
    return read_responses(folders) if folders else None


@register("ood_accuracy", needs=("classifier", "ood_stimuli"), figure="Fig. 12")
def ood_accuracy(
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
    """16-class accuracy per dataset and condition; per dataset pooled over its kept conditions (controls
    and, when ``raw_data`` holds the human files, conditions where humans are at or below 0.2 are left
    out); OOD accuracy = the mean over datasets (``dataset="all"``)."""
    resp = model_responses(ctx, stimuli, datasets, base_images, batch_size, max_per_class, seed)
    _save(resp, responses_dir)
    name = str(resp["subj"].iloc[0])
    ds = sorted(resp["dataset"].unique())
    excluded = excluded_conditions(_humans(ctx, raw_data, ds), ds)
    per_cond = accuracy_table(resp).drop(columns="subj").rename(columns={"accuracy": "value"})
    per_ds = dataset_accuracy(resp, excluded).drop(columns="subj").rename(columns={"accuracy": "value"})
    table = pd.concat(
        [
            per_cond.assign(metric="accuracy"),
            per_ds.assign(condition="kept", metric="accuracy"),
            pd.DataFrame(
                [
                    {
                        "dataset": "all",
                        "condition": "kept",
                        "metric": "ood_accuracy",
                        "value": float(per_ds["value"].mean()),
                        "n_trials": int(per_ds["n_trials"].sum()),
                    }
                ]
            ),
        ],
        ignore_index=True,
    )
    meta = _meta(
        ctx,
        datasets=ds,
        excluded=excluded.to_dict("records"),
        images=len(resp),
        max_per_class=max_per_class,
        **resp.attrs.get("decision_mapping", {}),
    )
    return ProbeResult("ood_accuracy", name, table, meta)


@register("error_consistency", needs=("classifier", "ood_stimuli", "human_responses"), figure="Fig. 12")
def error_consistency_probe(
    ctx: Any,
    stimuli: Optional[str] = None,
    raw_data: Optional[str] = None,
    datasets: Optional[Sequence[str]] = None,
    base_images: Optional[str] = None,
    batch_size: Optional[int] = None,
    max_per_class: Optional[int] = None,
    seed: int = 0,
    responses_dir: Optional[str] = None,
) -> ProbeResult:
    """Error consistency (kappa), observed and expected consistency with every human observer per dataset
    and condition on the shared trials (rows with ``human`` set), and the Fig. 12 summary (``human="all"``):
    the model's and the human-human baseline's OOD accuracy, observed consistency, error consistency
    and accuracy difference (controls and conditions where humans are at or below 0.2 excluded)."""
    resp = model_responses(ctx, stimuli, datasets, base_images, batch_size, max_per_class, seed)
    _save(resp, responses_dir)
    name = str(resp["subj"].iloc[0])
    ds = sorted(resp["dataset"].unique())
    humans = _humans(ctx, raw_data, ds)
    if humans is None:
        raise ValueError(
            "error consistency needs human responses: pass raw_data=<model-vs-human raw-data folder> "
            "(or give the probe context a .raw_data folder) holding " + ", ".join(ds) + "."
        )
    pairs = pairwise_consistency(resp, humans)
    model_pairs = pairs.loc[pairs["observer"] == name]
    if len(model_pairs) == 0:
        raise ValueError(
            f"no trial of {name} matches a human trial in {ds}: are the stimuli model-vs-human's images "
            f"(image ids must match the human files)?"
        )
    excluded = excluded_conditions(humans, ds)
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
    table = pd.concat([long.assign(observer=name), srows], ignore_index=True)
    meta = _meta(
        ctx,
        datasets=ds,
        excluded=excluded.to_dict("records"),
        images=len(resp),
        humans=sorted(humans["subj"].unique()),
        max_per_class=max_per_class,
        trials="pairs use the trials both answered (partial stimulus copies are normal)",
        aggregation="mean over conditions, then humans, then datasets",
        **resp.attrs.get("decision_mapping", {}),
    )
    return ProbeResult("error_consistency", name, table, meta)


__all__ = [
    "COLUMNS",
    "CONTROL_CONDITIONS",
    "Consistency",
    "DATASETS",
    "DecisionMapping",
    "DecisionRecorder",
    "accuracy_table",
    "categories16",
    "condition_key",
    "dataset_accuracy",
    "decision_mapping_for",
    "error_consistency",
    "error_consistency_probe",
    "evaluate_stimuli",
    "excluded_conditions",
    "human_accuracy",
    "image_id",
    "imagenet16",
    "kappa",
    "make_responses",
    "model_responses",
    "ood_accuracy",
    "pairwise_consistency",
    "read_responses",
    "shape_bias",
    "shape_bias_probe",
    "sixteen_class_probabilities",
    "summarise",
    "texture_category",
    "write_responses",
]
