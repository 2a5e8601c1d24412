"""The 12 parametric image distortions of model-vs-human (Geirhos et al. 2018, "Generalisation in
humans and deep neural networks"; Geirhos et al. 2021), applicable to any image set, with their
published condition levels -- the parametric half of the paper's 17 out-of-distribution sets
(App. C, Fig. 12).

Images are float tensors in [0, 1], (C, H, W) or (B, C, H, W); outputs have the same shape. As in
the original experiments every distortion except colour and false colour first converts to
greyscale (luminance 0.2125 R + 0.7154 G + 0.0721 B, replicated over the channels; that conversion and
the image conventions live in ``data/grey.py``, shared with the eidolons of ``data/eidolon.py``):

| dataset | transform | levels (file spelling = human CSV condition) |
|---|---|---|
| colour | ``cr`` original, ``bw`` greyscale | cr, bw |
| contrast | (1 - c)/2 + c * grey: deviation from mid-grey 0.5 scaled by c | c100 ... c01 (percent) |
| high-pass | grey - Gaussian(grey, sigma), mean set to 0.4423, clipped | inf (original), 3 ... 0.4 |
| low-pass | Gaussian(grey, sigma), border = 0.4423, clipped | 0 (original), 1 ... 40 |
| phase-scrambling | Fourier phases + uniform noise in [-w, w] degrees (conjugate-symmetric) | 0 ... 180 |
| power-equalisation | Fourier amplitude := a target spectrum (mean over the image set) | 0, pow |
| false-colour | opponent colours inverted (cone / DKL space) | true, false |
| rotation | rot90 counter-clockwise | 0, 90, 180, 270 |
| eidolon I/II/III | partially coherent disarray (``eidolon.py``), coherence 1 / 0.3 / 0, grain 10 | reach 1 ... 128 |
| uniform-noise | grey at 30 % contrast + uniform noise in [-w, w], clipped | 0.00 ... 0.90 |

Gaussian filters use scipy's convention (kernel radius int(4 sigma + 0.5), constant border 0.4423,
the mean pixel value of the original image set). False colour assumes a linear display: the
original used a measured monitor gamma table that is not public. Random distortions take a
``torch.Generator`` for reproducibility.
"""

from __future__ import annotations

import math
from typing import Callable, Dict, Optional, Tuple

import torch
import torch.nn.functional as F

from maskdistill.data.eidolon import eidolon
from maskdistill.data.grey import as_batch, grey_op, luminance, out_like

BG_GREY = 0.4423  # mean pixel value of the original image set (border of the Gaussian filters)
NOISE_CONTRAST = 0.3  # the uniform-noise images were first reduced to 30 % contrast


def greyscale(x: torch.Tensor) -> torch.Tensor:
    return grey_op(lambda g: g)(x)


def contrast(x: torch.Tensor, level: float) -> torch.Tensor:
    """Greyscale, then (1 - c)/2 + c * x: the deviation from mid-grey 0.5 is scaled by c in [0, 1]."""
    if not 0.0 <= level <= 1.0:
        raise ValueError(f"contrast level must lie in [0, 1], got {level}.")
    return grey_op(lambda g: (1.0 - level) / 2.0 + level * g)(x)


def uniform_noise(
    x: torch.Tensor, width: float, generator: Optional[torch.Generator] = None, contrast_level: float = NOISE_CONTRAST
) -> torch.Tensor:
    """Greyscale at ``contrast_level`` plus noise uniform in [-width, width] per pixel, clipped to [0, 1]."""
    if width < 0:
        raise ValueError(f"noise width must be >= 0, got {width}.")

    def fn(g: torch.Tensor) -> torch.Tensor:
        g = (1.0 - contrast_level) / 2.0 + contrast_level * g
        u = torch.rand(g.shape, generator=generator, dtype=g.dtype, device="cpu").to(g.device)
        return (g + (2.0 * u - 1.0) * width).clamp(0.0, 1.0)

    return grey_op(fn)(x)


def gaussian_blur(g: torch.Tensor, sigma: float, border: float = BG_GREY) -> torch.Tensor:
    """(B, 1, H, W) separable Gaussian filter, constant ``border`` outside the image (scipy's
    ``gaussian_filter(mode="constant")``: radius int(4 sigma + 0.5), normalised kernel)."""
    if sigma <= 0:
        return g
    r = int(4.0 * sigma + 0.5)
    t = torch.arange(-r, r + 1, dtype=g.dtype, device=g.device)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = k / k.sum()
    p = F.pad(g, (r, r, r, r), mode="constant", value=border)
    p = F.conv2d(p, k.view(1, 1, -1, 1))  # (B, 1, H, W + 2r)
    return F.conv2d(p, k.view(1, 1, 1, -1))  # (B, 1, H, W)


def low_pass(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Greyscale, Gaussian low-pass with standard deviation ``sigma`` px (0 = unfiltered), clipped."""
    if sigma < 0:
        raise ValueError(f"low-pass sigma must be >= 0, got {sigma}.")
    return grey_op(lambda g: gaussian_blur(g, sigma).clamp(0.0, 1.0))(x)


def high_pass(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Greyscale, image - Gaussian(image, sigma), mean shifted to 0.4423, clipped; ``inf`` = unfiltered."""
    if sigma <= 0:
        raise ValueError(f"high-pass sigma must be > 0 (inf = unfiltered), got {sigma}.")
    if math.isinf(sigma):
        return greyscale(x)

    def fn(g: torch.Tensor) -> torch.Tensor:
        h = g - gaussian_blur(g, sigma)
        return (h + (BG_GREY - h.mean(dim=(2, 3), keepdim=True))).clamp(0.0, 1.0)

    return grey_op(fn)(x)


def _conjugate_index(h: int, w: int, device: torch.device) -> torch.Tensor:
    """Flat index of -k for every frequency k of an (h, w) unshifted FFT grid."""
    r = (-torch.arange(h, device=device)) % h
    c = (-torch.arange(w, device=device)) % w
    return (r.view(-1, 1) * w + c.view(1, -1)).flatten()


def phase_scrambling(x: torch.Tensor, width: float, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Greyscale; add uniform noise in [-width, width] degrees to every Fourier phase, with opposite
    shifts for conjugate frequencies (the image stays real) and none for self-conjugate ones; clipped."""

    def fn(g: torch.Tensor) -> torch.Tensor:
        b, _, h, w = g.shape
        f = torch.fft.fft2(g.double())
        noise = (torch.rand((b, 1, h * w), generator=generator, dtype=torch.float64) * 2 - 1).to(g.device)
        noise = noise * math.radians(width)
        idx = torch.arange(h * w, device=g.device)
        conj = _conjugate_index(h, w, g.device)
        # one frequency of each conjugate pair draws the shift; its partner takes the negative
        shift = torch.where(idx < conj, noise, -noise[..., conj]) * (idx != conj)
        f = f * torch.polar(torch.ones_like(shift), shift).view(b, 1, h, w)
        return torch.fft.ifft2(f).real.to(g.dtype).clamp(0.0, 1.0)

    return grey_op(fn)(x)


def amplitude_spectrum(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) or (C, H, W) images -> (B, H, W) amplitude |FFT2| of their greyscale (unshifted)."""
    xb, _ = as_batch(x, check_range=False)
    return torch.fft.fft2(luminance(xb).double())[:, 0].abs()


def mean_amplitude_spectrum(images: torch.Tensor) -> torch.Tensor:
    """The equalisation target: mean amplitude spectrum (H, W) of a set of images (B, C, H, W)."""
    return amplitude_spectrum(images).mean(dim=0)


def power_equalisation(x: torch.Tensor, target_amplitude: torch.Tensor, clip: bool = True) -> torch.Tensor:
    """Greyscale; keep each image's Fourier phases, set the amplitudes to ``target_amplitude`` (H, W,
    unshifted layout, e.g. :func:`mean_amplitude_spectrum` of the image set); clipped unless ``clip=False``."""

    def fn(g: torch.Tensor) -> torch.Tensor:
        if tuple(target_amplitude.shape) != tuple(g.shape[-2:]):
            raise ValueError(
                f"target amplitude spectrum {tuple(target_amplitude.shape)} does not match the image size "
                f"{tuple(g.shape[-2:])}; compute it with mean_amplitude_spectrum on same-size images."
            )
        f = torch.fft.fft2(g.double())
        out = torch.fft.ifft2(torch.polar(target_amplitude.to(f.device, torch.float64).expand_as(f), f.angle())).real
        out = out.to(g.dtype)
        return out.clamp(0.0, 1.0) if clip else out

    return grey_op(fn)(x)


# Cone fundamentals of the display primaries (RGB -> LMS) and the LMS -> opponent (DKL) matrix used
# for the false-colour images (Geirhos et al. 2018; Brainard 1996), and the white point in LMS.
_RGB2LMS = (
    (0.1619982647, 0.208049264, 0.0389347448),
    (0.0330275785, 0.2496504557, 0.0618343518),
    (0.0015524055, 0.0198861001, 0.1890224274),
)
_LMS2DKL = ((9.27590805, 9.27590805, 0.0), (7.86421647, -9.33587662, 0.0), (-3.39709047, -3.39709047, 12.16230246))
_WHITE_LMS = (0.20449114, 0.17225619, 0.10523047)


def false_colour(x: torch.Tensor) -> torch.Tensor:
    """Invert both colour-opponent axes (L-M and S-(L+M)) around the white point, keep luminance."""
    xb, sq = as_batch(x)
    if xb.shape[1] != 3:
        raise ValueError(f"false colour needs RGB images, got {xb.shape[1]} channels.")
    m = torch.tensor(_RGB2LMS, dtype=torch.float64, device=xb.device)
    n = torch.tensor(_LMS2DKL, dtype=torch.float64, device=xb.device)
    white = torch.tensor(_WHITE_LMS, dtype=torch.float64, device=xb.device).view(1, 3, 1, 1)
    flip = torch.diag(torch.tensor([1.0, -1.0, -1.0], dtype=torch.float64, device=xb.device))
    # RGB -> LMS -> DKL, flip the chromatic axes, back: one 3x3 map on the cone contrasts
    t = torch.linalg.inv(m) @ torch.linalg.inv(n) @ flip @ n  # LMS contrast -> RGB
    lms = torch.einsum("ij,bjhw->bihw", m, xb.double()) - white
    rgb = torch.einsum("ij,bjhw->bihw", t, lms) + torch.einsum("ij,bjhw->bihw", torch.linalg.inv(m), white)
    return out_like(rgb.to(xb.dtype).clamp(0.0, 1.0), sq)


def rotate(x: torch.Tensor, degrees: int) -> torch.Tensor:
    """Greyscale, rotate counter-clockwise by a multiple of 90 degrees."""
    if int(degrees) % 90:
        raise ValueError(f"rotation is by multiples of 90 degrees (0, 90, 180, 270), got {degrees}.")
    return grey_op(lambda g: torch.rot90(g, k=(int(degrees) // 90) % 4, dims=(-2, -1)))(x)


# ---------------------------------------------------------------------------------------------------
# The published condition levels, spelled as in model-vs-human's human response files, and the
# transform each one names. ``apply_condition("contrast", x, "c05")`` == ``contrast(x, 0.05)``.
def _eidolon_level(coherence_tag: str) -> Callable[..., torch.Tensor]:
    def fn(x: torch.Tensor, cond: str, generator: Optional[torch.Generator]) -> torch.Tensor:
        reach, coh, grain = (float(v) for v in cond.split("-"))
        return eidolon(x, reach, coh / 10.0, grain, generator=generator)

    return fn


_REACH = ("1", "2", "4", "8", "16", "32", "64", "128")
CONDITIONS: Dict[str, Tuple[str, ...]] = {
    "colour": ("cr", "bw"),
    "contrast": ("c100", "c50", "c30", "c15", "c10", "c05", "c03", "c01"),
    "high-pass": ("inf", "3", "1.5", "1", "0.7", "0.55", "0.45", "0.4"),
    "low-pass": ("0", "1", "3", "5", "7", "10", "15", "40"),
    "phase-scrambling": ("0", "30", "60", "90", "120", "150", "180"),
    "power-equalisation": ("0", "pow"),
    "false-colour": ("true", "false"),
    "rotation": ("0", "90", "180", "270"),
    "eidolonI": tuple(f"{r}-10-10" for r in _REACH),
    "eidolonII": tuple(f"{r}-3-10" for r in _REACH),
    "eidolonIII": tuple(f"{r}-0-10" for r in _REACH),
    "uniform-noise": ("0.00", "0.03", "0.05", "0.10", "0.20", "0.35", "0.60", "0.90"),
}
_APPLY: Dict[str, Callable[..., torch.Tensor]] = {
    "colour": lambda x, c, g: x.clone() if c == "cr" else greyscale(x),
    "contrast": lambda x, c, g: contrast(x, int(c[1:]) / 100.0),
    "high-pass": lambda x, c, g: high_pass(x, float(c)),
    "low-pass": lambda x, c, g: low_pass(x, float(c)),
    "phase-scrambling": lambda x, c, g: phase_scrambling(x, float(c), generator=g),
    "false-colour": lambda x, c, g: x.clone() if c == "true" else false_colour(x),
    "rotation": lambda x, c, g: rotate(x, int(c)),
    "eidolonI": _eidolon_level("10"),
    "eidolonII": _eidolon_level("3"),
    "eidolonIII": _eidolon_level("0"),
    "uniform-noise": lambda x, c, g: uniform_noise(x, float(c), generator=g),
}


def apply_condition(
    dataset: str,
    x: torch.Tensor,
    condition: str,
    generator: Optional[torch.Generator] = None,
    target_amplitude: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """Distort images ``x`` as condition ``condition`` of parametric ``dataset`` (see ``CONDITIONS``).
    Power equalisation needs ``target_amplitude`` (:func:`mean_amplitude_spectrum` of the image set)."""
    if dataset not in CONDITIONS:
        raise ValueError(f"unknown parametric dataset {dataset!r}; known: {', '.join(CONDITIONS)}.")
    levels = CONDITIONS[dataset]
    key = {str(v).lower(): v for v in levels}
    cond = key.get(str(condition).lower())
    if cond is None:  # numeric spellings: "0.1" for "0.10", "3.0" for "3"
        try:
            cond = next(v for v in levels if v[0].isdigit() and float(v) == float(condition))
        except (ValueError, StopIteration):
            raise ValueError(f"{dataset} has no condition {condition!r}; levels: {', '.join(levels)}.") from None
    if dataset == "power-equalisation":
        if cond == "0":
            return greyscale(x)
        if target_amplitude is None:
            raise ValueError("power-equalisation needs target_amplitude: mean_amplitude_spectrum(images of the set).")
        return power_equalisation(x, target_amplitude)
    return _APPLY[dataset](x, cond, generator)


__all__ = [
    "BG_GREY",
    "CONDITIONS",
    "apply_condition",
    "NOISE_CONTRAST",
    "amplitude_spectrum",
    "contrast",
    "false_colour",
    "gaussian_blur",
    "greyscale",
    "high_pass",
    "low_pass",
    "mean_amplitude_spectrum",
    "phase_scrambling",
    "power_equalisation",
    "rotate",
    "uniform_noise",
]
