"""The image-level spectrum's interval (Figs. 5, 6c): its first-order (linearised) bootstrap from each
image's influence agrees with the exact bootstrap that recomputes the spectrum of every resample."""

from __future__ import annotations

import numpy as np
import torch

from maskdistill.probes.core.intervals import Bootstrap
from maskdistill.probes.representation.feature_spectra import singular_spectrum
from maskdistill.probes.representation.layer_intervals import spectrum_influence


def _value(x: np.ndarray, of: str) -> float:
    return float(singular_spectrum(torch.from_numpy(x), of).mean())


def _resampled(x: np.ndarray, counts: np.ndarray, of: str) -> np.ndarray:
    """The exact replicates: the spectrum of each resample (rows repeated by their counts)."""
    return np.array([_value(np.repeat(x, c.astype(int), axis=0), of) for c in counts])


def test_the_linearised_interval_matches_the_exact_bootstrap():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((400, 6)) * np.array([3.0, 2.0, 1.5, 1.0, 0.7, 0.5])  # a clear spectrum
    boot = Bootstrap(replicates=300, seed=1)
    for of in ("covariance", "features"):
        value = _value(x, of)
        influence = spectrum_influence(x, of)
        assert abs(influence.mean()) < 1e-9  # an influence function sums to zero
        linear = boot.means(value + influence)
        exact = _resampled(x, boot.counts(len(x)), of)
        assert np.corrcoef(linear, exact)[0, 1] > 0.95  # replicate by replicate
        (lo_l, hi_l), (lo_e, hi_e) = boot.interval(linear), boot.interval(exact)
        assert abs((hi_l - lo_l) / (hi_e - lo_e) - 1) < 0.15
        assert abs((lo_l + hi_l) / 2 - (lo_e + hi_e) / 2) < 0.2 * (hi_e - lo_e)
    # the features' relative logs are half the covariance's, and so is each influence
    np.testing.assert_allclose(spectrum_influence(x, "features"), 0.5 * spectrum_influence(x, "covariance"))
