"""A folder without a finished checkpoint is no run: a start that stopped before its first
checkpoint (too few images for one batch) leaves a folder that the corrected command starts in
without ``--overwrite``, saying what it replaced; ``--resume`` there names the way out."""

from __future__ import annotations

from maskdistill.cli import main
from maskdistill.runs.metrics import read_metrics


def test_a_run_refused_for_too_few_images_reruns_with_a_smaller_batch(
    tmp_path, tiny_overrides, pngs, capsys, restore_logging
):
    pngs(tmp_path / "few", n_per_class=3)  # 6 images, batch 8
    run = tmp_path / "run"
    argv = ["pretrain", "demo", *tiny_overrides, f"data.path={tmp_path / 'few'}", "train.max_steps=2"]
    assert main([*argv, "--out", str(run)]) == 2
    err = capsys.readouterr().err
    assert "fewer than one global batch of 8" in err and "train.batch_size" in err
    assert (run / "config.yaml").is_file()  # what the failed start left

    assert main([*argv, "train.batch_size=4", "--out", str(run), "--resume"]) == 2
    err = capsys.readouterr().err
    assert "holds no checkpoints to resume from (only config.yaml" in err
    assert "run the same command without --resume" in err

    assert main([*argv, "train.batch_size=4", "--out", str(run)]) == 0
    err = capsys.readouterr().err
    assert "replacing a start that stopped before its first checkpoint: config.yaml" in err
    assert "batch_size: 4" in (run / "config.yaml").read_text()
    assert [r["step"] for r in read_metrics(run / "metrics.csv")] == [1]  # 6 images / batch 4: one step
