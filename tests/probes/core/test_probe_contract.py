"""The contract every registered probe keeps, in one parametrized test: on a tiny ViT classifier and
the built-in data it runs, returns a tidy result (``metric`` and ``value`` columns, numbers that are
finite or NaN for "undefined", metadata with the model and number of images) that saves and loads
unchanged, and leaves the model as it found it --
no hook left, fused attention and forwards restored, eval mode -- after a normal run and after an
exception raised in the middle of its forward pass.

A probe is skipped only for a reason listed in ``SKIP`` (the tiny built-in context cannot give what
it needs); a new probe that cannot run here fails until it is listed with its reason.
"""

from __future__ import annotations

import inspect
import math

import numpy as np
import pandas as pd
import pytest
from timm.models.vision_transformer import VisionTransformer
from torch import nn

from helpers.models import tiny_vit
from maskdistill.data.analysis_data import parse_data
from maskdistill.data.synthetic import SHAPES
from maskdistill.models.spec import describe_model
from maskdistill.probes import ProbeResult, get_probe, probe_names
from maskdistill.probes.core.context import ProbeContext
from maskdistill.probes.core.registry import shared_groups
from maskdistill.probes.core.shared_pass import group_names

# Small settings for probes whose defaults are sized for real models (ignored if a probe lacks them).
TINY_PARAMS = {
    "n_batches": 1,
    "batch_size": 4,
    "max_iter": 6,
    "steps": 6,
    "grid": 3,
    "k": 2,
    "builtin_images": 8,
    "builtin_image_size": 32,
    "max_per_class": 1,
}
# Probes the tiny built-in context cannot serve, and why (each is tested elsewhere on real data).
SKIP = {
    "ood_accuracy": "needs model-vs-human's out-of-distribution stimulus sets on disk (17 sets); the built-in "
    "data has none -- tests/probes/decisions/ cover it",
    "error_consistency": "needs human responses (model-vs-human raw-data CSVs) and stimulus sets on disk -- "
    "tests/probes/decisions/ cover it",
}


def tiny_classifier() -> VisionTransformer:
    """32 px, 4 x 4 patches, two blocks, peaked (image-dependent) attention, one output per shape."""
    return tiny_vit("rgb32", num_classes=len(SHAPES), attention="peaked", eval_mode=True)


def make_ctx(model: nn.Module) -> ProbeContext:
    info = describe_model(model, "tiny", "tiny", overrides={"img_size": 32, "classes": list(SHAPES)})
    return ProbeContext("tiny", model, info, parse_data("builtin:val?size=32"), images=4, batch_size=2)


def params_for(fn) -> dict:
    sig = inspect.signature(fn).parameters
    return {k: v for k, v in TINY_PARAMS.items() if k in sig}


def model_state(model: nn.Module) -> dict:
    """Everything a capture or a probe could leave behind."""
    hooks = {}
    for name, m in model.named_modules():
        hooks[name] = (
            len(m._forward_hooks),
            len(m._forward_pre_hooks),
            len(m._backward_hooks),
            len(getattr(m, "_backward_pre_hooks", {})),
            getattr(m, "fused_attn", None),
            "forward" in m.__dict__,
            m.training,
        )
    glob = nn.modules.module
    hooks["<global>"] = (len(glob._global_forward_hooks), len(glob._global_forward_pre_hooks))
    return hooks


def params_digest(model: nn.Module) -> float:
    return float(sum(p.detach().double().abs().sum() for p in model.parameters()))


class Boom(RuntimeError):
    pass


@pytest.mark.parametrize("name", probe_names())
def test_probe_contract(name, tmp_path, monkeypatch):
    spec = get_probe(name)
    if name in SKIP:
        pytest.skip(SKIP[name])
    model = tiny_classifier()
    fused = [m.fused_attn for m in model.modules() if hasattr(m, "fused_attn")]
    assert fused and all(isinstance(f, bool) for f in fused)
    before, digest = model_state(model), params_digest(model)
    ctx = make_ctx(model)
    assert not ctx.missing(spec.needs), f"{name}: the tiny context cannot meet {spec.needs}: {ctx.missing(spec.needs)}"

    res = spec.fn(ctx, **params_for(spec.fn))
    # tidy result
    assert isinstance(res, ProbeResult) and res.probe == name and res.model == "tiny"
    assert {"metric", "value"} <= set(res.table.columns) and len(res.table) > 0
    values = pd.to_numeric(res.table["value"], errors="coerce")  # NaN may mark an undefined number
    assert values.notna().any() and not np.isinf(values).any(), f"{name}: no finite values, or infinite ones"
    assert res.table["metric"].map(lambda m: isinstance(m, str) and m != "").all()
    # saves and loads unchanged
    res.save(tmp_path / "tiny")
    back = ProbeResult.load(tmp_path / "tiny", name)
    pd.testing.assert_frame_equal(
        back.table.drop(columns="model"),
        res.table.reset_index(drop=True),
        check_dtype=False,
        check_exact=False,
        rtol=1e-12,
    )
    assert set(back.arrays) == set(res.arrays)
    for k, v in res.arrays.items():
        np.testing.assert_array_equal(back.arrays[k], v)
    assert back.meta["probe"] == name and back.meta["model"] == "tiny" and back.meta["version"]
    # the model is as it was
    assert model_state(model) == before, f"{name} left hooks/flags behind after a normal run"
    assert [m.fused_attn for m in model.modules() if hasattr(m, "fused_attn")] == fused
    assert math.isclose(params_digest(model), digest, rel_tol=0, abs_tol=0), f"{name} changed the weights"

    # ... and after an exception in the middle of the forward pass (fresh context: nothing memoised)
    def boom(*args, **kwargs):
        raise Boom("raised inside the last block")

    monkeypatch.setattr(model.blocks[-1].mlp, "forward", boom)
    state_with_patch = model_state(model)
    with pytest.raises(Boom):
        spec.fn(make_ctx(model), **params_for(spec.fn))
    assert model_state(model) == state_with_patch, f"{name} left hooks/flags behind after an exception"
    monkeypatch.undo()
    assert model_state(model) == before
    assert math.isclose(params_digest(model), digest, rel_tol=0, abs_tol=0)


def test_the_attention_and_representation_probes_are_registered():
    """The attention and representation probe names are a public contract."""
    names = set(probe_names())
    expected = {
        "attention_map": ("attention",),
        "attention_distance": ("attention",),
        "attention_entropy": ("attention",),
        "attention_nmi": ("attention",),
        "feature_fourier": ("tokens",),
        "token_singular_values": ("tokens",),
        "image_singular_values": ("tokens",),
    }
    assert set(expected) <= names
    for n, needs in expected.items():
        assert get_probe(n).needs == needs and get_probe(n).figure.startswith("Fig")
    with pytest.raises(KeyError, match="registered probes: .*attention_distance"):
        get_probe("attention_distanse")


def test_probes_name_the_shared_pass_groups_they_read():
    """``@register(..., shared=GROUP)`` is how the first shared pass learns what to compute: every
    group named is a registered statistics group of that pass, and the seven probes read theirs."""
    groups = set(group_names())
    read = {n: get_probe(n).shared for n in probe_names() if get_probe(n).shared}
    assert set(read.values()) == groups
    assert read == {
        "attention_map": "attention",
        "attention_distance": "attention",
        "attention_entropy": "attention",
        "attention_nmi": "attention",
        "feature_fourier": "fourier",
        "token_singular_values": "token_spectrum",
        "image_singular_values": "image_spectrum",
    }
    assert shared_groups(["attention_nmi", "feature_fourier", "hessian_trace", "nonexistent"]) == {
        "attention",
        "fourier",
    }
    assert "attention_maps" in group_names(extra=True) and "attention_maps" not in groups


@pytest.mark.parametrize("name", sorted(SKIP))
def test_probes_the_builtin_data_cannot_serve_are_refused_with_the_fix(name):
    """``analyze --probes all`` skips these with a reason (not a failure): the context's need checks
    say what is missing and how to give it; given it (as --param values), nothing is missing."""
    ctx = make_ctx(tiny_classifier())
    reasons = ctx.missing(get_probe(name).needs)
    assert reasons and any("--param" in r and "stimuli=" in r for r in reasons), reasons
    if name == "error_consistency":
        assert any("raw_data=" in r for r in reasons), reasons


def test_decision_need_checks_accept_the_data_when_given(tmp_path):
    ctx = make_ctx(tiny_classifier())
    assert not ctx.missing(get_probe("shape_bias").needs)  # builtin data: its own cue-conflict set
    (tmp_path / "cue-conflict" / "airplane").mkdir(parents=True)
    (tmp_path / "raw-data").mkdir()
    given = {"stimuli": str(tmp_path), "raw_data": str(tmp_path / "raw-data")}
    assert not ctx.missing(get_probe("ood_accuracy").needs, given)
    assert not ctx.missing(get_probe("error_consistency").needs, given)
    assert not ctx.missing(get_probe("ood_accuracy").needs, {"base_images": str(tmp_path)})
    missing = ctx.missing(get_probe("error_consistency").needs, {**given, "raw_data": str(tmp_path / "nope")})
    assert missing == [f"the human responses folder {tmp_path / 'nope'} does not exist"]
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "no stimulus set" in " ".join(ctx.missing(get_probe("shape_bias").needs, {"stimuli": str(empty)}))
