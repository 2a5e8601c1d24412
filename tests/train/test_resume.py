"""Exact resume: a run interrupted and resumed gives the same per-step losses
and the same final weights as one that was not; the resumed metrics.csv has each step once.

Drop path is on, so the torch RNG state saved in the checkpoint must be restored exactly (and
nothing may draw from the global RNG between restoring it and the first resumed step)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from helpers.checkpoints import latest_weights
from maskdistill.runs.metrics import read_metrics
from maskdistill.train.optim import cosine_lr
from maskdistill.train.pretrain import pretrain

COLUMNS = ("step", "epoch", "loss", "lr", "grad_norm")  # everything but the timing


def _rows(run: Path):
    return [{k: r[k] for k in COLUMNS} for r in read_metrics(run / "metrics.csv")]


def _csv_text(run: Path):
    """metrics.csv without the timing column, as text."""
    lines = (run / "metrics.csv").read_text().splitlines()
    drop = lines[0].split(",").index("img_per_s")
    return [[c for i, c in enumerate(line.split(",")) if i != drop] for line in lines]


def _assert_same_run(a: Path, b: Path) -> None:
    ra, rb = _rows(a), _rows(b)
    assert [r["step"] for r in rb] == [1, 2, 3, 4, 5, 6]  # no duplicated or missing steps
    assert [r["step"] for r in ra] == [1, 2, 3, 4, 5, 6]
    for x, y in zip(ra, rb):
        assert x["lr"] == y["lr"] and x["epoch"] == y["epoch"]
        assert abs(x["loss"] - y["loss"]) <= 1e-7, (x, y)
        assert abs(x["grad_norm"] - y["grad_norm"]) <= 1e-6 * max(1.0, x["grad_norm"]), (x, y)
    # As text, too: the resumed CSV reads like the uninterrupted one (same numbers, same format).
    assert _csv_text(a) == _csv_text(b)
    wa, wb = latest_weights(a), latest_weights(b)
    assert sorted(wa) == sorted(wb)
    for k in wa:
        assert torch.equal(wa[k], wb[k]), f"{k} differs after resume"


@pytest.fixture(params=["pixels", "run"])
def teacher_spec(request):
    return "pixels" if request.param == "pixels" else str(request.getfixturevalue("teacher_run"))


def test_resume_after_max_steps_equals_uninterrupted_run(tmp_path, make_cfg, teacher_spec):
    common = ("train.ckpt_every=3", "student.drop_path=0.1", f"teacher.spec={teacher_spec}")
    a, b = tmp_path / "A", tmp_path / "B"
    pretrain(make_cfg(*common), a)
    assert sorted(p.name for p in (a / "checkpoints").glob("step_*")) == ["step_00000003", "step_00000006"]

    first = pretrain(make_cfg(*common, "train.max_steps=3"), b)
    assert first["step"] == 3 and first["steps_run"] == 3
    assert [r["step"] for r in _rows(b)] == [1, 2, 3]
    resumed = pretrain(make_cfg(*common), b, resume=True)
    assert resumed["steps_run"] == 3 and resumed["step"] == 6
    _assert_same_run(a, b)

    # The per-step lr is the cosine schedule of the whole run (6 steps, 3 of warm-up) in both.
    lrs = [r["lr"] for r in _rows(a)]
    assert lrs == pytest.approx([cosine_lr(s, 6, 3, 1e-3, 1e-5) for s in range(6)], rel=1e-12)


def test_resume_after_a_crash_drops_the_rows_past_the_checkpoint(tmp_path, make_cfg, hook_forward):
    """Killed during step 5 (after the row of step 4 was written, with the last checkpoint at
    step 3): resuming replays steps 4..6 and metrics.csv holds each step once."""
    common = ("train.ckpt_every=3", "student.drop_path=0.1")
    a, b = tmp_path / "A", tmp_path / "B"
    pretrain(make_cfg(*common), a)

    def crash_at_5(n, out):
        if n == 5:
            raise KeyboardInterrupt
        return out

    crash = hook_forward(crash_at_5)
    with pytest.raises(KeyboardInterrupt):
        pretrain(make_cfg(*common), b)
    crash.active = False
    assert crash.calls == 5
    assert [r["step"] for r in _rows(b)] == [1, 2, 3, 4]  # step 4 logged, but not checkpointed
    assert (b / "checkpoints" / "latest").read_text().strip() == "step_00000003"

    # data.num_workers may change on resume: samples are seeded per item, not per worker.
    pretrain(make_cfg(*common, "data.num_workers=2"), b, resume=True)
    _assert_same_run(a, b)
