"""Loading a config (``maskdistill.config.loader``): dataclass defaults <- a preset that holds only
deltas <- dotted overrides; unknown keys are refused with the closest known ones; the dict/YAML
forms round-trip; ``diff`` lists the differences a refused resume prints."""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import OmegaConf

import maskdistill.config as config
from maskdistill.config import (
    PRESET_DIR,
    ConfigError,
    PretrainConfig,
    diff,
    from_dict,
    load_config,
    loader,
    schema,
    to_dict,
    to_yaml,
)


def _flat(d, prefix=""):
    out = {}
    for k, v in d.items():
        if isinstance(v, dict) and v and k != "kwargs":
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def test_the_package_is_the_public_face_of_loader_and_schema():
    assert config.load_config is loader.load_config and config.diff is loader.diff
    assert config.PretrainConfig is schema.PretrainConfig and config.ConfigError is schema.ConfigError
    assert issubclass(ConfigError, ValueError)  # a UsageError: exit code 2 on the command line


def test_a_preset_changes_only_the_keys_it_names():
    preset = _flat(OmegaConf.to_container(OmegaConf.load(PRESET_DIR / "pretrain" / "demo.yaml")))
    defaults, demo = _flat(to_dict(PretrainConfig())), _flat(to_dict(load_config("demo")))
    changed = {k for k in defaults if defaults[k] != demo[k]}
    assert changed and changed <= set(preset)
    assert demo["data.img_size"] == 64 and demo["student.kwargs"]["depth"] == 4  # from the preset
    assert demo["objective.loss"] == defaults["objective.loss"] == "smooth_l1"  # not in it: the default
    # A preset given as a file is the same as its name.
    assert to_dict(load_config(PRESET_DIR / "pretrain" / "demo.yaml")) == to_dict(load_config("demo"))


def test_dotted_overrides_win_over_the_preset_and_are_typed():
    cfg = load_config("demo", ["optim.lr=2e-3", "student.kwargs.depth=3", "train.max_steps=5", "mask.kind=random"])
    assert cfg.optim.lr == 2e-3 and cfg.student.kwargs["depth"] == 3 and cfg.train.max_steps == 5
    assert cfg.mask.kind == "random" and cfg.data.img_size == 64  # the rest of the preset stays
    assert isinstance(cfg.train.max_steps, int)
    with pytest.raises(ConfigError, match=r"override 'optim.lr' must look like key.sub=value"):
        load_config("demo", ["optim.lr"])
    with pytest.raises(ConfigError, match="invalid config value for train.batch_size: Value 'abc'"):
        load_config("demo", ["train.batch_size=abc"])


@pytest.mark.parametrize(
    "override, key, hint",
    [
        ("optim.lrr=1", "optim.lrr", "Did you mean: 'lr'?"),  # OmegaConf's own suggestion, in the section
        ("optimm.lr=1", "optimm", "Did you mean: 'optim'?"),
        ("optim.learning_rate=1", "optim.learning_rate", "Did you mean: optim.clip_grad, optim.min_lr?"),  # ours
    ],
)
def test_an_unknown_key_names_the_closest_known_ones(override, key, hint):
    with pytest.raises(ConfigError) as e:
        load_config("demo", [override])
    assert str(e.value).startswith(f"invalid config value for {key}: Key ")
    assert str(e.value).endswith(hint)


def test_an_unknown_preset_lists_the_presets_of_its_job():
    with pytest.raises(ConfigError, match="neither a file nor a preset; presets for pretrain: demo, demo_tokenizer"):
        load_config("no_such_preset")
    with pytest.raises(ConfigError, match="presets for finetune: demo, vit_b16_beitv2, vit_b16_paper"):
        load_config("no_such_preset", kind="finetune")


def test_dict_and_yaml_forms_round_trip(tmp_path: Path):
    cfg = load_config("demo", ["optim.betas=[0.9,0.95]", "student.kwargs.depth=3"])
    assert from_dict(to_dict(cfg)) == cfg
    (tmp_path / "run.yaml").write_text(to_yaml(cfg))
    assert load_config(tmp_path / "run.yaml") == cfg  # a run's config.yaml is a preset too


def test_diff_lists_changed_added_and_removed_keys_sorted():
    a = {"optim": {"lr": 1e-3, "betas": [0.9, 0.999]}, "train": {"seed": 0, "device": "cpu"}, "old": 1}
    b = {"optim": {"lr": 2e-3, "betas": (0.9, 0.999)}, "train": {"seed": 0, "device": "cuda"}, "new": {}}
    assert diff(a, b) == [
        "new: '<unset>' -> {}",
        "old: 1 -> '<unset>'",
        "optim.lr: 0.001 -> 0.002",
        "train.device: 'cpu' -> 'cuda'",
    ]  # a tuple and a list with the same items are the same value
    assert diff(a, b, ignore=("train.device", "old", "new")) == ["optim.lr: 0.001 -> 0.002"]
    assert diff(to_dict(load_config("demo")), to_dict(load_config("demo", ["train.seed=3"]))) == ["train.seed: 0 -> 3"]
