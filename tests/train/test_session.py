"""The job prologue every job shares (``maskdistill.train.session``): the device, the early refusal
of an output folder that holds a run (nothing built, nothing written), the seed, the sample stream,
and the run folder written only by ``start``."""

from __future__ import annotations

import pytest
import torch

from maskdistill import __version__
from maskdistill.errors import RunStopped, UsageError
from maskdistill.runs.folder import RunExistsError
from maskdistill.train.classify import ClassifyConfig
from maskdistill.train.loop import CorruptDataError, NonFiniteLossError
from maskdistill.train.pretrain import pretrain
from maskdistill.train.session import Session


def test_open_seeds_and_writes_nothing_until_start(tmp_path, make_cfg):
    cfg = make_cfg("train.seed=5")
    out = tmp_path / "run"
    session = Session.open(cfg, out)
    drawn = torch.rand(3)  # the model initialisation draws from the run's seed
    assert torch.equal(drawn, torch.rand(3, generator=torch.Generator().manual_seed(5)))
    assert session.device == torch.device("cpu") and not session.dist.enabled
    assert not out.exists()
    samples = session.samples()
    assert len(samples) == 48 and samples[0, 0]["image"].shape == (3, 32, 32) and "mask" not in samples[0, 0]
    session.start()
    assert "seed: 5" in (out / "config.yaml").read_text()
    meta = session.meta("pretrain", extra=1)
    assert meta == {"kind": "pretrain", "version": __version__, "config": session.cfg_dict, "extra": 1}
    # A config without a finished checkpoint is no run yet (a start that failed): the next start may go there.
    Session.open(cfg, out)
    (out / "checkpoints" / "step_00000001").mkdir(parents=True)
    (out / "checkpoints" / "step_00000001" / "meta.json").write_text("{}")
    with pytest.raises(RunExistsError, match="already holds a run"):  # refused before anything is built
        Session.open(cfg, out)


def test_classes_of_unlabelled_images_name_the_job(tmp_path, pngs):
    pngs(tmp_path / "flat", n_per_class=4, classes=("",))
    cfg = ClassifyConfig()
    cfg.data.path, cfg.train.device = str(tmp_path / "flat"), "cpu"
    session = Session.open(cfg, tmp_path / "run")
    with pytest.raises(ValueError, match="has no class sub-folders; classification needs labelled images"):
        session.classes(0, "classification")
    assert session.classes(3, "classification") == ([], 3)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_cuda_is_a_usage_error_before_anything_is_written(tmp_path, make_cfg):
    with pytest.raises(UsageError, match="train.device=cuda: no CUDA device is visible here; use train.device=cpu"):
        pretrain(make_cfg("train.device=cuda"), tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_runs_stopped_on_purpose_are_run_stopped():
    assert issubclass(NonFiniteLossError, RunStopped) and issubclass(CorruptDataError, RunStopped)
