"""The error policy of ``maskdistill.cli.main``: a usage or config mistake exits 2 with one
``maskdistill: error:`` line, a run that stopped on purpose (``RunStopped``) exits 1 with
``maskdistill: stopped:``, anything else propagates with its traceback -- including a ``ValueError``
raised inside torch rather than by maskdistill."""

from __future__ import annotations

import pytest
import torch

import maskdistill.train.demo as demo_mod
from maskdistill.cli import main
from maskdistill.cli.failures import classify_failure, raised_in_maskdistill
from maskdistill.data.folder import ImageFolder
from maskdistill.errors import RunStopped, UsageError
from maskdistill.probes.core.registry import get_probe
from maskdistill.train.loop import NonFiniteLossError


def _raise(exc: BaseException):
    def fake(*args, **kwargs):
        raise exc

    return fake


def _caught(fn, *args):
    try:
        fn(*args)
    except Exception as exc:  # noqa: BLE001 - the test inspects whatever was raised
        return exc
    raise AssertionError("nothing was raised")


def test_a_config_typo_exits_2_with_one_line_naming_the_key(tmp_path, capsys, restore_logging):
    rc = main(["pretrain", "demo", "train.epochz=3", "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.splitlines() == [
        "maskdistill: error: invalid config value for train.epochz: Key 'epochz' not in 'TrainConfig'. "
        "Did you mean: 'epochs'?"
    ]
    assert not (tmp_path / "run").exists()  # the config is checked before the run folder is made


def test_an_unknown_probe_exits_2_without_quotes_or_traceback(tmp_path, capsys, restore_logging):
    argv = ["analyze", "--model", "vit=timm:test_vit?pretrained=false", "--data", "builtin:val"]
    rc = main([*argv, "--probes", "attention_distanse", "--images", "4", "--out", str(tmp_path / "a")])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err
    (line,) = [x for x in err.splitlines() if x.startswith("maskdistill:")]
    assert line.startswith("maskdistill: error: unknown probe 'attention_distanse'; registered probes: ")
    assert "attention_distance" in line


def test_a_bad_model_option_exits_2(tmp_path, capsys, restore_logging):
    rc = main(["analyze", "--model", "vit", "--data", "builtin:val", "--out", str(tmp_path / "a")])
    assert rc == 2
    assert "maskdistill: error: --model 'vit': expected LEFT=RIGHT" in capsys.readouterr().err


def test_run_stopped_inside_a_command_exits_1_with_its_message(tmp_path, capsys, monkeypatch, restore_logging):
    monkeypatch.setattr(demo_mod, "run_demo", _raise(NonFiniteLossError("loss is nan at step 3; kept step 2")))
    assert main(["demo", "--out", str(tmp_path / "demo")]) == 1
    err = capsys.readouterr().err
    assert err.splitlines()[-1] == "maskdistill: stopped: loss is nan at step 3; kept step 2"
    assert "Traceback" not in err and "maskdistill: error" not in err


def test_an_unexpected_exception_propagates(tmp_path, capsys, monkeypatch, restore_logging):
    monkeypatch.setattr(demo_mod, "run_demo", _raise(ZeroDivisionError("a bug")))
    with pytest.raises(ZeroDivisionError, match="a bug"):
        main(["demo", "--out", str(tmp_path / "demo")])
    assert "maskdistill:" not in capsys.readouterr().err


def test_a_value_error_from_torch_is_not_taken_for_a_usage_error(tmp_path, capsys, monkeypatch, restore_logging):
    """torch's own ValueError (here: SGD refusing a negative learning rate) is a failure of the call
    that needs its traceback; only maskdistill's ValueErrors name a fix for the user."""

    def broken(*args, **kwargs):
        torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=-1.0)

    monkeypatch.setattr(demo_mod, "run_demo", broken)
    with pytest.raises(ValueError, match="Invalid learning rate"):
        main(["demo", "--out", str(tmp_path / "demo")])
    assert "maskdistill:" not in capsys.readouterr().err


def test_classify_failure_by_type_and_origin(tmp_path):
    (tmp_path / "empty").mkdir()
    own_value = _caught(ImageFolder, tmp_path / "empty")  # a plain ValueError raised in maskdistill
    own_key = _caught(get_probe, "no_such_probe")  # a plain KeyError raised in maskdistill
    torch_value = _caught(torch.optim.SGD, [torch.zeros(1, requires_grad=True)], -1.0)
    assert type(own_value) is ValueError and type(own_key) is KeyError and type(torch_value) is ValueError
    assert raised_in_maskdistill(own_value) and raised_in_maskdistill(own_key)
    assert not raised_in_maskdistill(torch_value) and not raised_in_maskdistill(ValueError("never raised"))

    assert classify_failure(own_value) == (2, f"maskdistill: error: {own_value}")
    assert classify_failure(own_key) == (2, f"maskdistill: error: {own_key.args[0]}")
    assert classify_failure(torch_value) is None
    assert classify_failure(ValueError("built, not raised")) is None
    assert classify_failure(UsageError("use --out")) == (2, "maskdistill: error: use --out")  # from anywhere
    assert classify_failure(FileNotFoundError("no such folder")) == (2, "maskdistill: error: no such folder")
    assert classify_failure(FileExistsError("holds a run")) == (2, "maskdistill: error: holds a run")
    assert classify_failure(RunStopped("corrupt images")) == (1, "maskdistill: stopped: corrupt images")
    assert classify_failure(RuntimeError("CUDA out of memory")) is None
    assert classify_failure(KeyError("not ours")) is None
