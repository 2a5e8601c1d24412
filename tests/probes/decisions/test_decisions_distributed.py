"""The decision probes data-parallel: two gloo processes launched by torchrun each evaluate half of
the stimuli and both end with the tables of one process -- the same decisions in the same item
order, random distortions included -- and a random distortion draws per item, whatever batches the
items are cut into."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from tests.helpers.decision_job import BASE_PER_CLASS, CUE_CONFLICT_IMAGES, OOD_SETS, decision_tables
from tests.helpers.torchrun import torchrun

from maskdistill.data.distortions import CONDITIONS
from maskdistill.parallel.group import SINGLE
from maskdistill.probes.decisions.model_responses import _distortion

JOB = Path(__file__).resolve().parents[2] / "helpers" / "decision_job.py"


def _same(a: pd.DataFrame, b: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(a.reset_index(drop=True), b.reset_index(drop=True), check_exact=True)


@pytest.mark.slow
def test_two_gloo_processes_compute_the_one_process_decision_tables(tmp_path):
    proc = torchrun([JOB, tmp_path / "job"], cwd=tmp_path, nproc=2, timeout=240, module=False)
    assert proc.returncode == 0, proc.stderr[-4000:]
    ranks = [pickle.loads((tmp_path / "job" / f"rank{r}.pkl").read_bytes()) for r in (0, 1)]
    ref = decision_tables(SINGLE, tmp_path / "single")

    resp = ref["responses"]
    items = 2 * BASE_PER_CLASS * sum(len(CONDITIONS[d]) for d in OOD_SETS)
    assert len(resp) == items and resp["object_response"].nunique() > 1  # varied: an order mix-up shows
    assert 0 < ref["correct"].mean() < 1  # right on some cue-conflict images, wrong on others
    assert ref["seen"] == dict(
        shape_bias=CUE_CONFLICT_IMAGES, accuracy=CUE_CONFLICT_IMAGES, ood=items
    )  # the probe reuses the memoised table
    for got in ranks:
        for key in ("shape_bias", "accuracy", "responses", "ood_accuracy"):
            _same(got[key], ref[key])
        assert np.array_equal(got["correct"], ref["correct"]) and len(got["correct"]) == CUE_CONFLICT_IMAGES
        for name, arr in ref["shape_bias_arrays"].items():
            assert np.array_equal(got["shape_bias_arrays"][name], arr, equal_nan=True), name
    # each rank ran its own share: 14 + 13 cue-conflict images, half of every OOD condition's 10 items
    assert [r["seen"]["shape_bias"] for r in ranks] == [14, 13]
    assert [r["seen"]["accuracy"] for r in ranks] == [14, 13]
    assert [r["seen"]["ood"] for r in ranks] == [items // 2, items // 2]


@pytest.mark.parametrize("dataset,condition", [("uniform-noise", "0.35"), ("phase-scrambling", "90")])
def test_random_distortions_draw_per_item_whatever_the_batches(dataset, condition):
    x = torch.rand(5, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    distort = _distortion(dataset, condition, 7, None)
    whole = distort(x, range(5))
    split = torch.cat([distort(x[:2], [0, 1]), distort(x[2:], [2, 3, 4])])
    assert torch.equal(whole, split)
    assert torch.equal(distort(x[3:4], [3]), whole[3:4])  # one item alone, as on another rank
    assert not torch.equal(_distortion(dataset, condition, 8, None)(x, range(5)), whole)  # the seed matters
    assert not torch.equal(distort(x[:1], [1]), whole[:1])  # and so does the item's index
