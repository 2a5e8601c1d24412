"""Non-finite losses: stop, keep the last good checkpoint, say which step.

The loss (or the gradient) is broken deterministically at a chosen step by wrapping
``MaskedDistiller.forward``."""

from __future__ import annotations

import math

import pytest
import torch

from maskdistill.cli import main
from maskdistill.runs.checkpoint import find_checkpoint, load_checkpoint
from maskdistill.runs.metrics import read_metrics
from maskdistill.train.loop import NonFiniteLossError
from maskdistill.train.optim import build_optimizer
from maskdistill.train.pretrain import build_distiller, pretrain


class _InfGrad(torch.autograd.Function):
    """Identity forward (the loss stays finite), infinite gradient backward."""

    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, g):
        return g * float("inf")


def _break_at(k: int, how: str):
    def hook(n, out):
        if n != k:
            return out
        loss = out["loss"]
        return dict(out, loss=loss * float("nan") if how == "nan" else _InfGrad.apply(loss))

    return hook


def _assert_kept_only(run, steps, make_cfg, *cfg_extra):
    ckdir = run / "checkpoints"
    names = sorted(p.name for p in ckdir.iterdir())
    assert names == ["latest"] + [f"step_{s:08d}" for s in steps], names  # nothing newer, no .tmp_*
    last = ckdir / f"step_{steps[-1]:08d}"
    assert find_checkpoint(run) == last
    distiller = build_distiller(make_cfg(*cfg_extra))
    meta = load_checkpoint(last, distiller, build_optimizer(distiller, make_cfg().optim))
    assert meta["step"] == steps[-1]
    for name, t in distiller.state_dict().items():
        assert torch.isfinite(t).all(), f"{name} is not finite in the kept checkpoint"
    return last


@pytest.mark.parametrize("how", ["nan", "inf_grad"])
def test_non_finite_step_stops_and_keeps_the_last_good_checkpoint(tmp_path, make_cfg, hook_forward, how):
    """Step 5 breaks (ckpt_every=2 wrote steps 2 and 4). With ``inf_grad`` the loss of step 5 is
    finite but its gradients are not: the optimizer step must not run either, else the weights
    (and the next checkpoint) would be NaN."""
    run = tmp_path / "run"
    extra = ("train.ckpt_every=2", "train.keep_last=3")
    hook_forward(_break_at(5, how))
    with pytest.raises(NonFiniteLossError) as err:
        pretrain(make_cfg(*extra), run)
    msg = str(err.value)
    assert "step 5" in msg
    last = _assert_kept_only(run, [2, 4], make_cfg, *extra)
    assert str(last) in msg and "optim.lr" in msg  # names the kept checkpoint and a fix
    assert [r["step"] for r in read_metrics(run / "metrics.csv")] == [1, 2, 3, 4]
    assert all(math.isfinite(r["loss"]) for r in read_metrics(run / "metrics.csv"))


def test_inf_gradient_on_a_checkpoint_step_writes_no_checkpoint(tmp_path, make_cfg, hook_forward):
    """Step 4 is a checkpoint step: with non-finite gradients there, step_4 must not be written
    (before the fix it was, holding NaN weights, and was then called the "last good" one)."""
    run = tmp_path / "run"
    hook_forward(_break_at(4, "inf_grad"))
    with pytest.raises(NonFiniteLossError, match="step 4"):
        pretrain(make_cfg("train.ckpt_every=2"), run)
    _assert_kept_only(run, [2], make_cfg)


def test_nan_before_any_checkpoint_through_the_cli(tmp_path, tiny_overrides, hook_forward, capsys, restore_logging):
    run = tmp_path / "run"
    hook_forward(_break_at(1, "nan"))
    assert main(["pretrain", "demo", *tiny_overrides, "--out", str(run)]) == 1  # a run that stopped, not a usage error
    err = capsys.readouterr().err
    assert "maskdistill: stopped:" in err and "step 1" in err and "Last verified checkpoint: none" in err
    assert not list((run / "checkpoints").glob("step_*")) if (run / "checkpoints").exists() else True


def test_the_nan_message_names_only_a_verified_checkpoint(tmp_path, make_cfg, hook_forward):
    """The newest checkpoint (step 4) is damaged before the NaN at step 5: the message names step 2,
    the newest that verifies, never the damaged one."""
    run = tmp_path / "run"

    def damage_then_nan(n, out):
        if n == 5:
            p = run / "checkpoints" / "step_00000004" / "model.safetensors"
            data = bytearray(p.read_bytes())
            data[-16:] = b"\xff\xff\xc0\x7f" * 4  # NaN patterns over weights: loads without a word
            p.write_bytes(bytes(data))
            return dict(out, loss=out["loss"] * float("nan"))
        return out

    hook_forward(damage_then_nan)
    with pytest.raises(NonFiniteLossError) as err:
        pretrain(make_cfg("train.ckpt_every=2", "train.keep_last=3"), run)
    msg = str(err.value)
    assert f"Last verified checkpoint: {run / 'checkpoints' / 'step_00000002'} (kept)" in msg
    assert "step_00000004" not in msg
