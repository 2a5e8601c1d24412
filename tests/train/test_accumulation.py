"""Gradient accumulation: ``train.batch_size`` is the global batch per
optimizer step; splitting it into accumulation micro-batches changes neither the losses nor the
weights (drop path off: its draws depend on the micro-batch shape)."""

from __future__ import annotations

import pytest
import torch

from helpers.checkpoints import latest_weights
from maskdistill.config import ConfigError
from maskdistill.runs.checkpoint import trainable_state
from maskdistill.runs.metrics import read_metrics
from maskdistill.train.pretrain import build_distiller, pretrain


@pytest.mark.parametrize("accum", [2, 4])
def test_accumulation_matches_one_big_batch(tmp_path, make_cfg, accum):
    common = ("train.max_steps=4", "train.ckpt_every=4")
    one, acc = tmp_path / "one", tmp_path / f"accum{accum}"
    pretrain(make_cfg(*common), one)
    pretrain(make_cfg(*common, f"train.accum_steps={accum}"), acc)
    r1, r2 = read_metrics(one / "metrics.csv"), read_metrics(acc / "metrics.csv")
    assert [r["step"] for r in r2] == [1, 2, 3, 4]
    for a, b in zip(r1, r2):
        assert b["loss"] == pytest.approx(a["loss"], abs=1e-5)
        assert b["grad_norm"] == pytest.approx(a["grad_norm"], rel=1e-4)
        assert b["lr"] == a["lr"]
    w1, w2 = latest_weights(one), latest_weights(acc)
    assert sorted(w1) == sorted(w2)
    for k in w1:
        torch.testing.assert_close(w2[k], w1[k], rtol=0, atol=1e-5, msg=k)
    # ... and the comparison is not trivial: training moved the weights well beyond that tolerance.
    torch.manual_seed(0)
    init = trainable_state(build_distiller(make_cfg(*common)))
    assert max((w1[k] - init[k]).abs().max().item() for k in w1) > 1e-3


def test_batch_not_divisible_by_accumulation_is_refused(make_cfg):
    with pytest.raises(ConfigError, match="accum_steps"):
        make_cfg("train.accum_steps=3")
