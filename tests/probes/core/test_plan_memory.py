"""The plan's Hessian steps: whether the gradient graph is kept (the operator's rule, from the
timed graph bytes), the time that follows, and the peak memory of a process, with a warning when it
exceeds the free memory -- worked cases with round numbers."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from maskdistill.parallel.group import SINGLE, Dist
from maskdistill.probes.core.plan import Step, estimate, graph_kept, memory
from maskdistill.probes.core.plan_table import render, rows

GB = 2**30
MEASURED = {
    "hvp_first": 3.0,  # seconds per image: builds the graph and takes a product
    "hvp": 1.0,  # seconds per image of a product through a kept graph
    "loss": 0.5,
    "image_bytes": 0.001 * GB,
    "graph_bytes": 0.1 * GB,  # saved for the backward passes (decides whether the graph is kept)
    "product_bytes": 0.25 * GB,  # the peak of building the graph and taking a product
    "graph_images": 100.0,
    "free_bytes": 40.0 * GB,
}


def _world(n: int) -> Dist:
    return SINGLE if n == 1 else Dist(rank=0, world=n, local_rank=0)


@pytest.mark.parametrize(
    "images, processes, kept",
    [(32, 1, True), (100, 1, True), (101, 1, False), (200, 2, True), (1000, 1, False), (20, 1, True)],
)
def test_the_graph_is_kept_while_the_share_fits(images, processes, kept):
    step = Step("hessian_top_eigs", "hvp", 10, images, 32)
    assert graph_kept(step, _world(processes), MEASURED) is kept


def test_kept_graph_pays_the_first_product_once_a_rebuilt_one_every_time():
    kept, rebuilt = Step("t", "hvp", 10, 100, 32), Step("t", "hvp", 10, 1000, 32)
    assert estimate(kept, SINGLE, MEASURED) == pytest.approx(100 * (3.0 + 9 * 1.0))
    assert estimate(rebuilt, SINGLE, MEASURED) == pytest.approx(1000 * 3.0 * 10)
    assert estimate(rebuilt, _world(10), MEASURED) == pytest.approx(100 * (3.0 + 9 * 1.0))


def test_memory_is_the_images_and_the_products_peak():
    kept, rebuilt = Step("t", "hvp", 10, 100, 32), Step("t", "hvp", 10, 1000, 32)
    assert memory(kept, SINGLE, MEASURED) == pytest.approx(100 * 0.001 * GB + 100 * 0.25 * GB)
    assert memory(rebuilt, SINGLE, MEASURED) == pytest.approx(1000 * 0.001 * GB + 32 * 0.25 * GB)
    assert memory(Step("t", "loss", 121, 1000, 32), SINGLE, MEASURED) == pytest.approx(1000 * 0.001 * GB)
    assert math.isnan(memory(Step("shared pass", "pass", 1, 1000, 64), SINGLE, MEASURED))


def test_the_printed_plan_names_the_graph_and_warns_past_the_free_memory():
    fits = Step("hessian_top_eigs", "hvp", 10, 100, 32)
    too_big = Step("hessian_density", "hvp", 30, 50_000, 32)  # 50 GB of images + 8 GB of graph
    plan = pd.DataFrame(rows("vitb", [fits, too_big], SINGLE, MEASURED))
    text = render(plan, SINGLE, "cuda:0")
    assert "25.1 GB per process" in text and ", graph kept" in text
    assert "58.0 GB per process" in text and "graph rebuilt for each product" in text
    assert "! hessian_density would hold up to 58.0 GB per process, more than the 40.0 GB free" in text
    assert "! hessian_top_eigs" not in text
    fine = render(pd.DataFrame(rows("vitb", [fits], SINGLE, MEASURED)), SINGLE, "cuda:0")
    assert "!" not in fine
