"""The fine-tuning sharpness callback under DDP (paper Fig. 7c/f): 2 gloo processes, each holding
its share of the one fixed batch and all-reducing every Hessian-vector product, log the λ₁ and
trace that 1 process logs on the same batch after the same training steps -- once, from rank 0."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers.sharpness_job import main as run_single
from helpers.torchrun import torchrun
from maskdistill.runs.metrics import read_metrics

pytestmark = pytest.mark.slow

HELPER = Path(__file__).resolve().parents[1] / "helpers" / "sharpness_job.py"


def test_two_processes_log_the_one_process_sharpness(tmp_path, restore_logging):
    proc = torchrun([HELPER, tmp_path / "two"], cwd=tmp_path, nproc=2, timeout=240, module=False)
    assert proc.returncode == 0, proc.stderr[-4000:]
    run_single(str(tmp_path / "one"))
    one = read_metrics(tmp_path / "one" / "metrics_sharpness.csv")
    two = read_metrics(tmp_path / "two" / "metrics_sharpness.csv")
    assert [r["step"] for r in two] == [r["step"] for r in one] == [2, 4]  # one row per step: rank 0 writes
    assert {r["processes"] for r in two} == {2.0} and {r["processes"] for r in one} == {1.0}
    for a, b in zip(one, two):
        # Lanczos converges to 1e-3 relative residual; the ranks' sums differ from one process's in
        # float32 rounding only, so λ₁ agrees far inside that
        assert b["lambda_1"] == pytest.approx(a["lambda_1"], rel=1e-4)
        assert b["lambda_converged"] == a["lambda_converged"] == 1.0
        # the same Rademacher probes and stopping rule: the same samples, the estimate to rounding
        assert b["trace_samples"] == a["trace_samples"]
        assert b["trace"] == pytest.approx(a["trace"], rel=1e-4)
    assert len({r["lambda_1"] for r in one}) == 2  # it tracks a changing model
