"""Beyond the paper: does each qualitative claim of Secs. 3-5 hold for a given teacher and its MD
student, within the uncertainty of the measurement? For every ``--pair teacher=student`` the report
states, with the numbers and a 95 % interval of the student-teacher delta, one of three verdicts:

- **holds**: the interval lies on the claimed side of zero;
- **contradicted**: it lies on the other side;
- **inconclusive**: it contains zero (more images narrow it), or a number is unconverged or has no
  interval -- the verdict says which and what to do.

The claims (``CLAIMS``), each naming its probe, metric and layer group:

1. MD lowers the average attention distance in the top layers (Sec. 3, Fig. 3a), and
2. raises it in the lower layers (Sec. 3: "the average attention in the lower layers increased");
3. MD raises NMI in the top layers and 4. lowers it slightly in the lower layers (Sec. 3, Fig. 6a);
5. MD spreads the per-head attention entropy in the top layers (Fig. 10: "diversifies the attention
   across different heads": a larger standard deviation over heads);
6./7. MD raises the top-layer relative singular values, token and image level (Sec. 4, Figs. 4-6);
8. MD increases the low-frequency preference in the top layers and 9. the high-frequency preference
   in the lower layers (Sec. 3, Fig. 3b);
10./11. after fine-tuning, MD gives a smaller top Hessian eigenvalue and trace (Sec. 4, Fig. 7) --
   for a pair of fine-tuned models;
12. after fine-tuning, the MD student has a higher shape bias than the teacher (Sec. 5, Figs. 8a, 11);
13. MD does not raise error consistency with humans (Sec. 5, Fig. 12; when human data is given).

Layer groups, per model from its own depth d: k = max(1, round(d / 3)); **top layers** = blocks
d-k+1 .. d (the last third), **lower layers** = blocks 1 .. k (the first third). For the attention
probes layer i is block i's attention; for the representation probes it is block i's output (the
patch embedding, layer 0, is in neither group). A claim compares the mean over its group of the
per-layer value (mean over heads, or the spectrum's per-layer mean). "Slightly" (claim 4) means a
decrease no larger in magnitude than the top-layer NMI increase of claim 3. Claims a pair has no
results for are left out of its table.

Other families can add claims with :func:`register_claim`; :mod:`maskdistill.report.verdicts`
evaluates them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Tuple

TOP_FRACTION = 1.0 / 3.0
MODEL = "<model>"  # in a claim's ``where``: the name of the model whose result is read


def layer_groups(depth: int) -> Tuple[List[int], List[int]]:
    """(lower layers, top layers) as 1-based block numbers: the first and last third."""
    if depth < 1:
        raise ValueError(f"depth={depth}: a model needs at least one block.")
    k = max(1, int(round(depth * TOP_FRACTION)))
    return list(range(1, k + 1)), list(range(depth - k + 1, depth + 1))


@dataclass(frozen=True)
class Claim:
    key: str
    statement: str  # the paper's claim, as the report prints it
    probe: str
    metric: str  # the metric in the probe's table
    group: str  # "top" | "lower": a layer group; "model": one number of the model (rows chosen by ``where``)
    direction: int  # +1: the student's value should be higher; -1: lower
    slight_of: str | None = None  # |delta| must not exceed that claim's |delta|
    kind: str = "differs"  # "differs": the delta has the claimed sign; "not_higher": it is not above 0
    figure: str = ""
    where: Dict[str, object] = field(default_factory=dict)  # column -> value of the rows of a "model" claim


CLAIMS: List[Claim] = [
    Claim(
        "distance_top",
        "MD lowers the average attention distance in the top layers",
        "attention_distance",
        "attention_distance_layer_mean",
        "top",
        -1,
        figure="Fig. 3a",
    ),
    Claim(
        "distance_lower",
        "MD raises the average attention distance in the lower layers",
        "attention_distance",
        "attention_distance_layer_mean",
        "lower",
        +1,
        figure="Sec. 3",
    ),
    Claim(
        "nmi_top",
        "MD raises NMI in the top layers",
        "attention_nmi",
        "attention_nmi_layer_mean",
        "top",
        +1,
        figure="Fig. 6a",
    ),
    Claim(
        "nmi_lower",
        "MD lowers NMI slightly in the lower layers",
        "attention_nmi",
        "attention_nmi_layer_mean",
        "lower",
        -1,
        slight_of="nmi_top",
        figure="Fig. 6a",
    ),
    Claim(
        "entropy_spread_top",
        "MD spreads the per-head attention entropy in the top layers",
        "attention_entropy",
        "attention_entropy_head_std",
        "top",
        +1,
        figure="Fig. 10",
    ),
    Claim(
        "token_sv_top",
        "MD raises the top-layer token-level relative singular values (less folding)",
        "token_singular_values",
        "mean_relative_log_singular_value",
        "top",
        +1,
        figure="Figs. 4, 6b",
    ),
    Claim(
        "image_sv_top",
        "MD raises the top-layer image-level relative singular values (less folding)",
        "image_singular_values",
        "mean_relative_log_singular_value",
        "top",
        +1,
        figure="Figs. 5, 6c",
    ),
    Claim(
        "low_freq_top",
        "MD increases the low-frequency preference in the top layers (lower Δ log amplitude of the high frequency)",
        "feature_fourier",
        "high_freq_relative_log_amplitude",
        "top",
        -1,
        figure="Fig. 3b",
    ),
    Claim(
        "high_freq_lower",
        "MD increases the high-frequency preference in the lower layers (higher Δ log amplitude)",
        "feature_fourier",
        "high_freq_relative_log_amplitude",
        "lower",
        +1,
        figure="Fig. 3b",
    ),
    Claim(
        "top_eig_ft",
        "After fine-tuning, MD gives a smaller top Hessian eigenvalue",
        "hessian_top_eigs",
        "eigenvalue",
        "model",
        -1,
        figure="Fig. 7",
        where={"block": "all", "index": 0},
    ),
    Claim(
        "trace_ft",
        "After fine-tuning, MD gives a smaller Hessian trace",
        "hessian_trace",
        "trace",
        "model",
        -1,
        figure="Fig. 7f",
        where={"block": "all"},
    ),
    Claim(
        "shape_bias_ft",
        "After fine-tuning, the MD student has a higher shape bias than the teacher",
        "shape_bias",
        "shape_bias",
        "model",
        +1,
        figure="Figs. 8a, 11",
        where={"category": "all"},
    ),
    Claim(
        "error_consistency",
        "MD does not raise error consistency with humans",
        "error_consistency",
        "error_consistency",
        "model",
        -1,
        kind="not_higher",
        figure="Fig. 12",
        where={"human": "all", "observer": MODEL},  # the model's own summary row, not the humans' baseline
    ),
]


def register_claim(claim: Claim) -> Claim:
    if any(c.key == claim.key for c in CLAIMS):
        raise ValueError(f"a claim with key {claim.key!r} exists already.")
    CLAIMS.append(claim)
    return claim


DEFINITIONS = (
    "Top layers: the last third of the blocks (k = max(1, round(depth/3)) blocks); lower layers: "
    "the first third. Values are means over the group of the per-layer value (attention: mean over "
    "heads; entropy spread: standard deviation over heads; spectra: mean of the kept relative log "
    "singular values; Fourier: Δ log amplitude of the highest kept frequency). 'Slightly' = a decrease "
    "no larger than the top-layer NMI increase. Δ = student − teacher with its 95% interval (a paired "
    "bootstrap over the images when both models saw the same images; curvature: the solvers' error "
    "bounds combined). holds: the interval lies on the claimed side of 0; contradicted: on the other "
    "side; inconclusive: it contains 0 (more images narrow it) or a number is unconverged."
)

__all__ = ["Claim", "CLAIMS", "MODEL", "register_claim", "layer_groups", "DEFINITIONS", "TOP_FRACTION"]
