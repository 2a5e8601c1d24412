"""Beyond the paper: does each qualitative claim of Secs. 3-4 hold for a given teacher and its MD
student? For every ``--pair teacher=student`` the report states, with the numbers, whether

1. MD lowers the average attention distance in the top layers (Sec. 3, Fig. 3a);
2. MD raises NMI in the top layers (Sec. 3, Fig. 6a);
3. MD lowers NMI slightly in the lower layers (Sec. 3, Fig. 6a);
4. MD raises the top-layer relative singular values, token level (Sec. 4, Figs. 4, 6b) and
5. image level (Sec. 4, Figs. 5, 6c): less representation folding;
6. MD increases the low-frequency preference in the top layers (Sec. 3, Fig. 3b): a lower
   (more negative) relative log amplitude of the highest kept frequency.

Layer groups, per model from its own depth d: k = max(1, round(d / 3)); **top layers** = blocks
d-k+1 .. d (the last third), **lower layers** = blocks 1 .. k (the first third). For the attention
probes layer i is block i's attention; for the representation probes it is block i's output (the
patch embedding, layer 0, is in neither group). A claim compares the mean over its group of the
per-layer value (mean over heads, or the spectrum's per-layer mean). "Slightly" (claim 3) means a
decrease no larger in magnitude than the top-layer NMI increase of claim 2.

Other families can add claims with :func:`register_claim`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

import numpy as np
import pandas as pd

from maskdistill.probes.core.registry import ProbeResult

TOP_FRACTION = 1.0 / 3.0


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
    metric: str  # per-layer metric in the probe's table
    group: str  # "top" | "lower"
    direction: int  # +1: the student's value should be higher; -1: lower
    slight_of: Optional[str] = None  # |delta| must not exceed that claim's |delta|


CLAIMS: List[Claim] = [
    Claim(
        "distance_top",
        "MD lowers the average attention distance in the top layers",
        "attention_distance",
        "attention_distance_layer_mean",
        "top",
        -1,
    ),
    Claim("nmi_top", "MD raises NMI in the top layers", "attention_nmi", "attention_nmi_layer_mean", "top", +1),
    Claim(
        "nmi_lower",
        "MD lowers NMI slightly in the lower layers",
        "attention_nmi",
        "attention_nmi_layer_mean",
        "lower",
        -1,
        slight_of="nmi_top",
    ),
    Claim(
        "token_sv_top",
        "MD raises the top-layer token-level relative singular values (less folding)",
        "token_singular_values",
        "mean_relative_log_singular_value",
        "top",
        +1,
    ),
    Claim(
        "image_sv_top",
        "MD raises the top-layer image-level relative singular values (less folding)",
        "image_singular_values",
        "mean_relative_log_singular_value",
        "top",
        +1,
    ),
    Claim(
        "low_freq_top",
        "MD increases the low-frequency preference in the top layers (lower Δ log amplitude of the high frequency)",
        "feature_fourier",
        "high_freq_relative_log_amplitude",
        "top",
        -1,
    ),
]


def register_claim(claim: Claim) -> Claim:
    if any(c.key == claim.key for c in CLAIMS):
        raise ValueError(f"a claim with key {claim.key!r} exists already.")
    CLAIMS.append(claim)
    return claim


def _group_mean(res: ProbeResult, claim: Claim) -> Tuple[Optional[float], str]:
    t = res.table
    per_layer = t[t.metric == claim.metric].set_index("layer")["value"]
    depth = int(res.meta.get("depth") or per_layer.index.max())
    lower, top = layer_groups(depth)
    layers = top if claim.group == "top" else lower
    vals = per_layer.reindex(layers)
    if per_layer.empty or vals.isna().any():
        return None, ""
    return float(vals.mean()), f"{layers[0]}-{layers[-1]} of {depth}"


def evaluate_pair(teacher: str, student: str, results: Dict[str, Dict[str, ProbeResult]]) -> pd.DataFrame:
    """One row per claim: teacher and student values (mean over the layer group), delta
    (student - teacher), verdict ("holds" / "does not hold" / "not measured" / "not comparable")."""
    rows, deltas = [], {}
    for c in CLAIMS:
        rt, rs = results.get(teacher, {}).get(c.probe), results.get(student, {}).get(c.probe)
        row = dict(
            teacher=teacher,
            student=student,
            claim=c.statement,
            probe=c.probe,
            group=c.group,
            teacher_layers="",
            student_layers="",
            teacher_value=np.nan,
            student_value=np.nan,
            delta=np.nan,
            verdict="not measured",
        )
        if rt is None or rs is None:
            row["verdict"] = f"not measured (run {c.probe} on both models)"
            rows.append(row)
            continue
        if "of" in rt.meta and rt.meta.get("of") != rs.meta.get("of"):
            row["verdict"] = f"not comparable (of={rt.meta.get('of')} vs of={rs.meta.get('of')})"
            rows.append(row)
            continue
        (vt, lt), (vs, ls) = _group_mean(rt, c), _group_mean(rs, c)
        row.update(teacher_layers=lt, student_layers=ls)
        if vt is None or vs is None:
            row["verdict"] = f"not measured ({c.metric} missing for some layers)"
            rows.append(row)
            continue
        delta = vs - vt
        deltas[c.key] = delta
        ok = delta * c.direction > 0
        note = ""
        if ok and c.slight_of is not None:
            bound = deltas.get(c.slight_of)
            if bound is None:
                ok, note = False, f" (cannot judge 'slightly': {c.slight_of} not measured)"
            elif abs(delta) > abs(bound):
                ok, note = False, f" (decrease {abs(delta):.4g} larger than the top-layer change {abs(bound):.4g})"
        row.update(teacher_value=vt, student_value=vs, delta=delta, verdict=("holds" if ok else "does not hold") + note)
        rows.append(row)
    return pd.DataFrame(rows)


def evaluate(pairs: List[Tuple[str, str]], results: Dict[str, Dict[str, ProbeResult]]) -> pd.DataFrame:
    frames = [evaluate_pair(t, s, results) for t, s in pairs]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


DEFINITIONS = (
    "Top layers: the last third of the blocks (k = max(1, round(depth/3)) blocks); lower layers: "
    "the first third. Values are means over the group of the per-layer value (attention: mean over "
    "heads; spectra: mean of the kept relative log singular values; Fourier: Δ log amplitude of the "
    "highest kept frequency). 'Slightly' = a decrease no larger than the top-layer NMI increase."
)

__all__ = [
    "Claim",
    "CLAIMS",
    "register_claim",
    "layer_groups",
    "evaluate_pair",
    "evaluate",
    "DEFINITIONS",
    "TOP_FRACTION",
]
