"""Registered representation probes (paper Secs. 3-4): ``feature_fourier`` (Fig. 3b),
``token_singular_values`` (Figs. 4, 6b) and ``image_singular_values`` (Figs. 5, 6c).

They read the residual stream's groups of the one shared streaming pass: prefix tokens dropped;
layer 0 is the patch embedding (+ position embedding), layer i the output of block i, before the
final norm. Fourier amplitudes: log(|FFT2| + 1e-6) of each channel's token map, zero frequency
centred, mean of logs over channels and images, along the diagonal (k, k), minus k = 0. Spectra:
relative log singular values log s_i - log s_1 of the centred features (or of their covariance,
exactly twice those), first min(n - 1, C) kept, in float64.

Tables (tidy): ``layer``, ``index`` (frequency k or singular value index i; empty for per-layer
scalars), ``metric``, ``value``.
"""

from __future__ import annotations

from typing import Any, List, Tuple

import numpy as np
import pandas as pd

from maskdistill.probes.core.registry import ProbeResult, register
from maskdistill.probes.core.shared_pass import SharedStats
from maskdistill.probes.representation.feature_spectra import SPECTRUM_OF
from maskdistill.probes.representation.layer_intervals import LayerIntervals, describe
from maskdistill.probes.representation.token_accumulators import FOURIER, IMAGE_SPECTRUM, TOKEN_SPECTRUM

HIGH_FREQ = "high_freq_relative_log_amplitude"
MEAN_SV = "mean_relative_log_singular_value"
LAYERS = "0 = patch embedding + position embedding, i = output of block i; before the final norm"


def _meta(ctx: Any, st: SharedStats, **extra: Any) -> dict:
    boot = describe(getattr(ctx, "bootstrap", None), st.n_images)
    return ctx.meta(**st.describe(), **boot, layers=LAYERS, prefix="dropped", **extra)


def _curve_rows(curves: np.ndarray, metric: str, scalar_metric: str, scalars: np.ndarray) -> List[dict]:
    """curves (L, K) -> rows per (layer, index) and a per-layer scalar."""
    rows = [
        dict(layer=l, index=k, metric=metric, value=float(curves[l, k]))
        for l in range(curves.shape[0])
        for k in range(curves.shape[1])
    ]
    rows += [dict(layer=l, index=np.nan, metric=scalar_metric, value=float(scalars[l])) for l in range(len(scalars))]
    return rows


def _table(rows: List[dict]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["layer", "index", "metric", "value"]).assign(ci_low=np.nan, ci_high=np.nan)


def _check_of(of: str) -> None:
    if of not in SPECTRUM_OF:
        raise ValueError(f"of={of!r}: use 'covariance' (Park et al.'s convention, the default) or 'features'.")


@register("feature_fourier", needs=("tokens",), figure="Fig. 3b", shared=FOURIER)
def feature_fourier(ctx: Any) -> ProbeResult:
    """Relative log amplitude of the 2-D Fourier transform of the patch-token maps per layer: the
    curve over diagonal frequencies (k, k), k = 0..ceil(L/2)-1, minus k = 0, and the per-layer
    scalar at the highest kept frequency (Fig. 3b's Δ log amplitude)."""
    st = ctx.shared_pass(FOURIER)
    curves = st.group(FOURIER)
    mean = (curves.sums / st.n_images).numpy()  # (depth + 1, K) mean log amplitude
    rel = mean - mean[:, :1]
    table = _table(_curve_rows(rel, "relative_log_amplitude", HIGH_FREQ, rel[:, -1]))
    arrays = {"relative_log_amplitude": rel}
    LayerIntervals(table, arrays, getattr(ctx, "bootstrap", None)).per_layer(HIGH_FREQ, curves.per_image)
    return ProbeResult(
        "feature_fourier",
        ctx.name,
        table,
        _meta(
            ctx,
            st,
            fft="log(|FFT2| + 1e-6), unnormalised, zero frequency centred, mean of logs over channels and images",
            frequencies="diagonal (k, k) from the centre",
            scalar=f"k = {rel.shape[1] - 1} (last kept; not Nyquist for even L)",
        ),
        arrays,
    )


def _spectrum_result(
    ctx: Any,
    st: SharedStats,
    probe: str,
    rel: np.ndarray,
    of: str,
    level: str,
    table: pd.DataFrame,
    arrays: dict,
    **extra: Any,
) -> ProbeResult:
    return ProbeResult(
        probe,
        ctx.name,
        table,
        _meta(
            ctx,
            st,
            of=of,
            level=level,
            kept=int(rel.shape[1]),
            relative="log s_i - log s_1 (natural log); 'covariance' values are exactly twice 'features' values",
            scalar="mean of the kept relative log values",
            rank_limit="first min(n - 1, C) values kept",
            **extra,
        ),
        arrays,
    )


def _spectrum_table(rel: np.ndarray) -> Tuple[pd.DataFrame, dict]:
    rows = _curve_rows(rel, "relative_log_singular_value", MEAN_SV, rel.mean(1))
    return _table(rows), {"relative_log_singular_value": rel}


@register("token_singular_values", needs=("tokens",), figure="Figs. 4, 6b", shared=TOKEN_SPECTRUM)
def token_singular_values(ctx: Any, of: str = "covariance") -> ProbeResult:
    """Token-level relative log singular value spectrum per layer: per image the N patch tokens
    (N, C) centred over tokens, spectra averaged over images; ``of`` the covariance (default) or the
    features."""
    _check_of(of)
    st = ctx.shared_pass(TOKEN_SPECTRUM)
    curves, scale = st.group(TOKEN_SPECTRUM), (2.0 if of == "covariance" else 1.0)
    rel = (curves.sums / st.n_images).numpy() * scale  # (depth + 1, K)
    table, arrays = _spectrum_table(rel)
    LayerIntervals(table, arrays, getattr(ctx, "bootstrap", None)).per_layer(MEAN_SV, curves.per_image, scale)
    level = "token: per image, N patch tokens centred over tokens; mean over images"
    return _spectrum_result(ctx, st, "token_singular_values", rel, of, level, table, arrays)


@register("image_singular_values", needs=("tokens",), figure="Figs. 5, 6c", shared=IMAGE_SPECTRUM)
def image_singular_values(ctx: Any, of: str = "covariance") -> ProbeResult:
    """Image-level relative log singular value spectrum per layer: the global-average-pooled patch
    tokens of all analysed images (n, C), centred over images (merged batch by batch in float64)."""
    _check_of(of)
    st = ctx.shared_pass(IMAGE_SPECTRUM)
    spectra = st.group(IMAGE_SPECTRUM)
    rel = np.stack([acc.spectrum(of).cpu().numpy() for acc in spectra.layers])  # (depth + 1, K)
    table, arrays = _spectrum_table(rel)
    LayerIntervals(table, arrays, getattr(ctx, "bootstrap", None)).image_spectrum(MEAN_SV, spectra.pooled, of)
    level = "image: global-average-pooled patch tokens of all images, centred over images"
    return _spectrum_result(ctx, st, "image_singular_values", rel, of, level, table, arrays)


__all__ = ["feature_fourier", "token_singular_values", "image_singular_values"]
