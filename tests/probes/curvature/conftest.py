"""Fixtures of the curvature tests."""

import pytest

from probes.curvature.cases import make_vit_case


@pytest.fixture(scope="module")
def vit_case():
    """A 691-parameter ViT, a batch of 6, and its exact Hessian (float64)."""
    return make_vit_case()
