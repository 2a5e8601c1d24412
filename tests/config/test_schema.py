"""The typed sections and ``validate`` (``maskdistill.config.schema``): the sections every job
shares, the allowed values of the choice keys, and the rules no single value shows."""

from __future__ import annotations

import dataclasses

import pytest

from maskdistill.config import ConfigError, JobConfig, PretrainConfig, load_config, validate


def test_every_job_config_has_the_shared_sections():
    from maskdistill.train.classify import ClassifyConfig
    from maskdistill.train.finetune_config import FinetuneConfig
    from maskdistill.train.vqkd import TokenizerConfig

    for schema in (PretrainConfig, ClassifyConfig, FinetuneConfig, TokenizerConfig):
        assert issubclass(schema, JobConfig)
        names = [f.name for f in dataclasses.fields(schema)]
        assert names[:4] == ["data", "optim", "train", "log"], schema
    assert [f.name for f in dataclasses.fields(PretrainConfig)][4:] == [
        "mask",
        "teacher",
        "student",
        "decoder",
        "objective",
    ]
    # A job may narrow a shared section to its own defaults.
    assert FinetuneConfig().train.batch_size == 1024 and TokenizerConfig().optim.lr == 2e-4
    assert PretrainConfig().train.batch_size == 2048 and PretrainConfig().optim.lr == 1.5e-3


def test_a_choice_key_lists_its_values():
    with pytest.raises(ConfigError, match=r"mask.kind='x' is not one of blockwise, random, none\."):
        load_config("demo", ["mask.kind=x"])
    with pytest.raises(ConfigError, match=r"train.device='tpu' is not one of auto, cpu, cuda\."):
        load_config("demo", ["train.device=tpu"])


def test_no_masks_with_masked_loss_is_refused():
    with pytest.raises(ConfigError, match="mask.loss_on=all"):
        load_config("demo", ["mask.kind=none"])
    assert load_config("demo", ["mask.kind=none", "mask.loss_on=all"]).mask.loss_on == "all"


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["train.batch_size=10", "train.accum_steps=3"], "train.batch_size=10 is not divisible by train.accum_steps=3"),
        (["optim.lr=1e-5", "optim.min_lr=1e-3"], "need 0 <= optim.min_lr <= optim.lr"),
        (["data.min_scale=0"], r"data.min_scale=0.0 must be in \(0, 1\]"),
        (["data.img_size=30", "student.kwargs.patch_size=8"], "not divisible by the student's patch size 8"),
    ],
)
def test_values_that_cannot_work_together_are_refused(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config("demo", overrides)


def test_validate_skips_the_sections_a_job_does_not_have():
    from maskdistill.train.classify import ClassifyConfig

    cfg = ClassifyConfig()  # no mask, student or decoder
    assert validate(cfg) is cfg
    cfg.train.accum_steps = 3
    with pytest.raises(ConfigError, match="not divisible by train.accum_steps=3"):
        validate(cfg)
