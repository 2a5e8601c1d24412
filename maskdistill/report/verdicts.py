"""The claims table: each claim of :mod:`maskdistill.report.claims` for a teacher/student pair, from
saved results only -- both values, the delta (student - teacher), its 95 % interval and a
three-valued verdict.

The delta's interval: when both results keep bootstrap replicates of the claim's metric
(``bootstrap.<metric>``, :mod:`maskdistill.probes.core.intervals`), the percentile interval of the
replicate-wise differences -- a paired bootstrap when the two models saw the same images in the same
order, independent resamples otherwise; else, when both rows carry ``ci_low``/``ci_high`` (the
curvature solvers' error bounds), the difference of the two intervals ``[s_lo - t_hi, s_hi - t_lo]``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

import numpy as np
import pandas as pd

from maskdistill.probes.core.intervals import paired, percentile_interval, replicates
from maskdistill.probes.core.registry import ProbeResult
from maskdistill.report.claims import CLAIMS, MODEL, Claim, layer_groups

Results = Dict[str, Dict[str, ProbeResult]]
HOLDS, CONTRADICTED, INCONCLUSIVE = "holds", "contradicted", "inconclusive"
CONVERGED_PROBES = ("hessian_top_eigs", "hessian_trace")  # results whose meta says whether the solver converged


@dataclass
class Measured:
    """One model's number for a claim: the value, the rows it averages, its replicates (B,) or its
    interval, and the layers it covers."""

    value: Optional[float]
    layers: str = ""
    reps: Optional[np.ndarray] = None
    ci: Optional[Tuple[float, float]] = None
    why: str = ""


def _rows(res: ProbeResult, claim: Claim) -> Tuple[np.ndarray, str, str]:
    """(positions among the rows of ``claim.metric`` to average, the layers they cover, why not)."""
    t = res.table
    sel = t[t.metric == claim.metric].reset_index(drop=True)
    if claim.group == "model":
        mask = np.ones(len(sel), bool)
        for col, val in claim.where.items():
            want = res.model if val == MODEL else str(val)
            if col in sel.columns:
                mask &= (sel[col].astype(str) == want).to_numpy()
        return np.flatnonzero(mask), "", "" if mask.any() else f"{claim.metric} missing"
    depth = int(res.meta.get("depth") or sel["layer"].max())
    lower, top = layer_groups(depth)
    layers = top if claim.group == "top" else lower
    pos = [np.flatnonzero(sel["layer"].to_numpy() == l) for l in layers]
    if sel.empty or any(len(p) != 1 for p in pos):
        return np.array([], int), "", f"{claim.metric} missing for some layers"
    return np.concatenate(pos), f"{layers[0]}-{layers[-1]} of {depth}", ""


def measure(res: ProbeResult, claim: Claim) -> Measured:
    pos, layers, why = _rows(res, claim)
    if why:
        return Measured(None, why=why)
    sel = res.table[res.table.metric == claim.metric].reset_index(drop=True).iloc[pos]
    m = Measured(float(sel["value"].mean()), layers)
    reps = replicates(res, claim.metric)
    if reps is not None and reps.shape[1] == int((res.table.metric == claim.metric).sum()):
        m.reps = reps[:, pos].mean(1)
    elif {"ci_low", "ci_high"} <= set(sel.columns) and sel[["ci_low", "ci_high"]].notna().all().all():
        m.ci = (float(sel["ci_low"].mean()), float(sel["ci_high"].mean()))
    return m


def delta_interval(t: Measured, s: Measured) -> Tuple[Optional[Tuple[float, float]], str]:
    """The delta's interval and how it was taken ("paired bootstrap" / "bootstrap" / "bounds" / "")."""
    if t.reps is not None and s.reps is not None:
        b = min(len(t.reps), len(s.reps))  # the same resamples row by row (see Bootstrap.count_chunks)
        lo, hi = percentile_interval(s.reps[:b] - t.reps[:b])
        return (float(lo), float(hi)), "bootstrap"
    ct = t.ci or _ci_of(t)
    cs = s.ci or _ci_of(s)
    if ct is not None and cs is not None:
        return (cs[0] - ct[1], cs[1] - ct[0]), "bounds"
    return None, ""


def _ci_of(m: Measured) -> Optional[Tuple[float, float]]:
    if m.reps is None:
        return None
    lo, hi = percentile_interval(m.reps)
    return float(lo), float(hi)


def verdict(ci: Optional[Tuple[float, float]], claim: Claim, no_interval: str = "") -> str:
    """Three-valued: where the delta's interval lies with respect to zero and the claimed side;
    ``no_interval``: why a result has none (its metadata's ``intervals``)."""
    if ci is None:
        return f"{INCONCLUSIVE} ({no_interval or 'no interval: rerun analyze with --bootstrap 1000'})"
    lo, hi = sorted((ci[0] * claim.direction, ci[1] * claim.direction))  # > 0: the claimed side
    if lo > 0:
        return HOLDS
    if hi < 0:
        return CONTRADICTED
    if claim.kind == "not_higher":
        return f"{INCONCLUSIVE} (the interval contains 0: no sign of an increase, but a small one is not ruled out)"
    return f"{INCONCLUSIVE} (the interval contains 0: more images narrow it)"


def _unconverged(rt: ProbeResult, rs: ProbeResult) -> List[str]:
    return [r.model for r in (rt, rs) if r.probe in CONVERGED_PROBES and r.meta.get("converged") is False]


def _images(rt: ProbeResult, rs: ProbeResult) -> str:
    n = [r.meta.get("images") for r in (rt, rs)]
    if n[0] is None and n[1] is None:
        return ""
    return str(n[0]) if n[0] == n[1] else f"{n[0]} / {n[1]}"


def _slightly(row: dict, claim: Claim, deltas: Dict[str, float]) -> None:
    """'Slightly' lower: a claimed decrease no larger than the bound claim's change."""
    if not row["verdict"].startswith(HOLDS) or claim.slight_of is None:
        return
    bound = deltas.get(claim.slight_of)
    if bound is None:
        row["verdict"] = f"{INCONCLUSIVE} (cannot judge 'slightly': {claim.slight_of} not measured)"
    elif abs(row["delta"]) > abs(bound):
        row["verdict"] = (
            f"{CONTRADICTED} (decrease {abs(row['delta']):.4g} larger than the top-layer change {abs(bound):.4g})"
        )


def _named(teacher: str, student: str, claim: Claim, **more: object) -> dict:
    """The cells that name a row: the pair and the claim."""
    named = dict(teacher=teacher, student=student, claim=claim.statement, figure=claim.figure, probe=claim.probe)
    return dict(named, group=claim.group, **more)


def _claim_row(teacher: str, student: str, claim: Claim, rt: ProbeResult, rs: ProbeResult, deltas: dict) -> dict:
    row = _named(teacher, student, claim, images=_images(rt, rs), interval="")
    if "of" in rt.meta and rt.meta.get("of") != rs.meta.get("of"):
        return dict(row, verdict=f"not comparable (of={rt.meta.get('of')} vs of={rs.meta.get('of')})")
    mt, ms = measure(rt, claim), measure(rs, claim)
    row.update(teacher_layers=mt.layers, student_layers=ms.layers)
    if mt.value is None or ms.value is None:
        return dict(row, verdict=f"not measured ({mt.why or ms.why})")
    ci, how = delta_interval(mt, ms)
    if how == "bootstrap" and paired(rt.meta, rs.meta):
        how = "paired bootstrap"
    delta = ms.value - mt.value
    deltas[claim.key] = delta
    why = next((str(r.meta["intervals"]) for r in (rt, rs) if str(r.meta.get("intervals", "")).startswith("no ")), "")
    row.update(teacher_value=mt.value, student_value=ms.value, delta=delta, interval=how)
    row["verdict"] = verdict(ci, claim, why)
    if ci is not None:
        row.update(delta_ci_low=ci[0], delta_ci_high=ci[1])
    late = _unconverged(rt, rs)
    if late:
        row["verdict"] = f"{INCONCLUSIVE} ({claim.probe} did not converge for {', '.join(late)}: raise its max_iter)"
    _slightly(row, claim, deltas)
    return row


COLUMNS = [
    "teacher",
    "student",
    "claim",
    "figure",
    "probe",
    "group",
    "teacher_layers",
    "student_layers",
    "teacher_value",
    "student_value",
    "delta",
    "delta_ci_low",
    "delta_ci_high",
    "interval",
    "images",
    "verdict",
]


def evaluate_pair(teacher: str, student: str, results: Results) -> pd.DataFrame:
    """One row per claim whose probe either model ran: both values (mean over the layer group), the
    delta (student - teacher), its interval and the verdict ("holds" / "contradicted" /
    "inconclusive (...)" / "not measured (...)" / "not comparable (...)")."""
    rows, deltas = [], {}
    for c in CLAIMS:
        rt, rs = results.get(teacher, {}).get(c.probe), results.get(student, {}).get(c.probe)
        if rt is None and rs is None:
            continue
        if rt is None or rs is None:
            rows.append(_named(teacher, student, c, verdict=f"not measured (run {c.probe} on both models)"))
            continue
        rows.append(_claim_row(teacher, student, c, rt, rs, deltas))
    return pd.DataFrame(rows, columns=COLUMNS)


def evaluate(pairs: List[Tuple[str, str]], results: Results) -> pd.DataFrame:
    frames = [evaluate_pair(t, s, results) for t, s in pairs]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=COLUMNS)


__all__ = [
    "CONTRADICTED",
    "HOLDS",
    "INCONCLUSIVE",
    "Measured",
    "delta_interval",
    "evaluate",
    "evaluate_pair",
    "measure",
    "verdict",
]
