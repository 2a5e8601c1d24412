"""The functional API of the attention and representation probes (paper Secs. 3-4): pure tensor
functions, collected here from the modules that define them so that one import reaches them all.

- attention maps (Fig. 2): :func:`attention_map`;
- average attention distance (Fig. 3a), attention entropy (Fig. 10), normalised mutual information
  between queries and keys (Fig. 6a): :func:`attention_distance`, :func:`attention_entropy`,
  :func:`attention_nmi`, on post-softmax attention whose prefix tokens were removed by
  :func:`drop_prefix` (rows renormalised, as Park et al. 2022 do); :func:`attention_sums` gives the
  three per image and head straight from the attention with its prefix;
- relative log amplitude of the Fourier-transformed features (Fig. 3b):
  :func:`fourier_relative_log_amplitude` (per image: :func:`fourier_log_amplitude_diagonal`);
- relative log singular value spectra, token level (Figs. 4, 6b) and image level (Figs. 5, 6c):
  :func:`singular_spectrum`, :func:`token_singular_spectrum`, :func:`image_singular_spectrum`, and
  :class:`SpectrumAccumulator` for the image level over many batches.

Every attention statistic returns one value per image and head, (B, H), so a caller sums them batch
by batch; statistics run in float32 (float64 input stays float64; the spectra always use float64),
whatever dtype the model ran in.
"""

from maskdistill.probes.representation.attention_stats import (
    attention_distance,
    attention_entropy,
    attention_map,
    attention_nmi,
    attention_sums,
    drop_prefix,
    patch_distances,
)
from maskdistill.probes.representation.feature_spectra import (
    SPECTRUM_OF,
    SpectrumAccumulator,
    fourier_log_amplitude_diagonal,
    fourier_relative_log_amplitude,
    global_average_pool,
    image_singular_spectrum,
    singular_spectrum,
    token_singular_spectrum,
)

__all__ = [
    "drop_prefix",
    "patch_distances",
    "attention_distance",
    "attention_entropy",
    "attention_nmi",
    "attention_map",
    "attention_sums",
    "fourier_log_amplitude_diagonal",
    "fourier_relative_log_amplitude",
    "singular_spectrum",
    "token_singular_spectrum",
    "global_average_pool",
    "image_singular_spectrum",
    "SpectrumAccumulator",
    "SPECTRUM_OF",
]
