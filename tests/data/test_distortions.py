"""The 12 parametric distortions of model-vs-human (maskdistill.data.distortions, .eidolon): analytic
checks (identities, spectra, published levels) plus each transform's defining property."""

import math

import pytest
import torch

from maskdistill.data import distortions as D
from maskdistill.data.eidolon import eidolon, scale_levels
from maskdistill.data.grey import LUMA, luminance


def _image(seed=0, size=32, channels=3, lo=0.0, hi=1.0):
    g = torch.Generator().manual_seed(seed)
    return lo + (hi - lo) * torch.rand((2, channels, size, size), generator=g)


def _smooth(size=32):
    """A smooth grey image (values 0.3..0.7) as (1, 3, size, size)."""
    r = torch.arange(size, dtype=torch.float32)
    img = 0.5 + 0.2 * torch.sin(2 * math.pi * r / size).view(-1, 1) * torch.cos(2 * math.pi * r / size).view(1, -1)
    return img.expand(1, 3, size, size).clone()


def test_rotation_four_times_is_identity_and_greyscale_idempotent():
    x = _image()
    g = D.greyscale(x)
    assert torch.equal(D.greyscale(g), g)
    assert torch.allclose(g[:, 0], (x * torch.tensor(LUMA).view(1, 3, 1, 1)).sum(1))
    y = g
    for _ in range(4):
        y = D.rotate(y, 90)
    assert torch.equal(y, g)
    assert torch.equal(D.rotate(x, 90)[0, 0], torch.rot90(g[0, 0], 1))  # counter-clockwise
    assert torch.equal(D.rotate(x[0], 270), D.rotate(D.rotate(D.rotate(x[0], 90), 90), 90))  # (C, H, W) too
    with pytest.raises(ValueError, match="multiples of 90"):
        D.rotate(x, 45)


def test_low_pass_sigma_zero_is_identity_and_matches_a_direct_gaussian():
    g = D.greyscale(_image())
    assert torch.equal(D.low_pass(g, 0), g)
    # sigma 1: compare with the 2-d convolution written out (constant border 0.4423, radius 4)
    k = torch.exp(-0.5 * torch.arange(-4, 5, dtype=torch.float64) ** 2)
    k2 = (k / k.sum()).outer(k / k.sum())
    p = torch.nn.functional.pad(g[:, :1].double(), (4, 4, 4, 4), value=D.BG_GREY)
    ref = torch.nn.functional.conv2d(p, k2.view(1, 1, 9, 9))
    assert torch.allclose(D.low_pass(g, 1.0)[:, :1].double(), ref.clamp(0, 1), atol=1e-6)


@pytest.mark.parametrize("c", [1.0, 0.5, 0.1, 0.0])
def test_contrast_scales_the_deviation_from_mid_grey(c):
    x = _image()
    g = D.greyscale(x)
    assert torch.allclose(D.contrast(x, c) - 0.5, c * (g - 0.5), atol=1e-6)
    assert D.apply_condition("contrast", x, "c05").sub(0.5).abs().max() <= 0.05 * 0.5 + 1e-6


def test_uniform_noise_stays_within_its_width():
    x = _image(size=64)
    base = D.contrast(x, D.NOISE_CONTRAST)  # the noise set is at 30 % contrast
    for w in (0.03, 0.2, 0.9):
        y = D.uniform_noise(x, w, generator=torch.Generator().manual_seed(1))
        dev = y - base
        assert dev.abs().max() <= w + 1e-6 and 0.0 <= y.min() and y.max() <= 1.0
        if w <= 0.2:  # nothing clipped: the noise fills its range, centred
            assert dev.abs().max() > 0.95 * w and abs(float(dev.mean())) < 0.02 * w + 1e-3
    assert torch.equal(D.uniform_noise(x, 0.0), base)


def test_power_equalisation_gives_the_target_amplitude_spectrum():
    x, other = _image(0), _image(7)
    target = D.mean_amplitude_spectrum(other)  # (H, W): a valid (conjugate-symmetric) spectrum
    y = D.power_equalisation(x, target, clip=False)
    assert torch.allclose(D.amplitude_spectrum(y), target.expand(2, -1, -1), rtol=1e-4, atol=1e-3)
    f_in, f_out = torch.fft.fft2(luminance(x).double()), torch.fft.fft2(luminance(y).double())
    phase_diff = torch.angle(f_out * f_in.conj())[f_in.abs() > 1e-3]
    assert phase_diff.abs().max() < 1e-3  # phases kept
    with pytest.raises(ValueError, match="does not match the image size"):
        D.power_equalisation(x, target[:16, :16])


def test_phase_scrambling_keeps_the_amplitude_spectrum():
    x = _smooth()
    assert torch.allclose(D.phase_scrambling(x, 0.0), D.greyscale(x), atol=1e-6)
    y = D.phase_scrambling(x, 90.0, generator=torch.Generator().manual_seed(0))
    assert 0 < y.min() and y.max() < 1  # nothing clipped, so the spectrum is exact
    assert torch.allclose(D.amplitude_spectrum(y), D.amplitude_spectrum(x), atol=1e-3)
    assert (y - D.greyscale(x)).abs().max() > 0.01


def test_high_pass_false_colour_and_conditions():
    x = _image()
    assert torch.equal(D.high_pass(x, math.inf), D.greyscale(x))
    y = D.high_pass(_smooth(), 3.0)
    assert float(y.mean()) == pytest.approx(D.BG_GREY, abs=1e-4)
    grey = torch.full((1, 3, 4, 4), 0.3)
    assert torch.allclose(D.false_colour(grey), grey, atol=5e-3)  # achromatic stays achromatic
    c = _image(lo=0.45, hi=0.55)  # near the white point: no clipping, so flipping twice is the identity
    assert torch.allclose(D.false_colour(D.false_colour(c)), c, atol=1e-5)
    assert (D.false_colour(c) - c).abs().max() > 0.01
    assert D.apply_condition("uniform-noise", x, "0.1").shape == x.shape  # "0.1" is the file's "0.10"
    with pytest.raises(ValueError, match=r"no condition 'c07'.*c100"):
        D.apply_condition("contrast", x, "c07")
    with pytest.raises(ValueError, match="power-equalisation needs target_amplitude"):
        D.apply_condition("power-equalisation", x, "pow")
    with pytest.raises(TypeError, match="float tensor"):
        D.greyscale((x * 255).to(torch.uint8))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        D.greyscale(x * 3)


def test_every_published_level_runs():
    x = _image(size=32)
    target = D.mean_amplitude_spectrum(x)
    assert sum(len(v) for v in D.CONDITIONS.values()) == 2 + 8 + 8 + 8 + 7 + 2 + 2 + 4 + 3 * 8 + 8
    for ds, levels in D.CONDITIONS.items():
        for c in levels:
            y = D.apply_condition(ds, x, c, torch.Generator().manual_seed(0), target)
            assert y.shape == x.shape and 0 <= y.min() and y.max() <= 1, (ds, c)


def test_eidolon_reach_zero_keeps_the_image_and_distortion_grows_with_reach():
    x = _smooth(64)
    assert scale_levels(64)[0] == pytest.approx(2**-0.5) and scale_levels(64)[-1] == pytest.approx(16)
    still = eidolon(x, reach=0, coherence=1.0)
    assert (still - D.greyscale(x)).abs().max() < 0.02  # only the finest blur (sigma 0.71 px) is left
    err = {
        r: float((eidolon(x, r, 0.3, 10.0, torch.Generator().manual_seed(0)) - still).pow(2).mean()) for r in (1, 4, 16)
    }
    assert err[1] < err[4] < err[16]
    a = eidolon(x, 8, 0.0, 10.0, torch.Generator().manual_seed(3))
    assert torch.equal(a, eidolon(x, 8, 0.0, 10.0, torch.Generator().manual_seed(3)))  # seeded
    assert (a[:, 0] == a[:, 1]).all()  # greyscale output
