"""Hand-written probe results for the report tests: tidy tables in the saved format of the attention
and representation probes (a ``layer`` column, per-head rows and per-layer means), written with
``ProbeResult.save`` so that the report sees exactly what ``maskdistill analyze`` leaves on disk.
Imported as ``from report.saved_results import ...`` (tests/ is on the test path)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, Optional

import numpy as np
import pandas as pd

from maskdistill.probes.core.intervals import array_key
from maskdistill.probes.core.registry import ProbeResult

DEPTH = 3  # blocks: lower layers = block 1, top layers = block 3 (the first and last third)


def per_layer(probe: str, model: str, metric: str, values: Dict[int, float], **meta) -> ProbeResult:
    """A result whose table holds ``metric`` per layer (``values``: layer -> value)."""
    table = pd.DataFrame({"layer": list(values), "metric": metric, "value": list(values.values())})
    return ProbeResult(probe, model, table, {"depth": DEPTH, **meta})


def attention(probe: str, model: str, means: Dict[int, float]) -> ProbeResult:
    """An attention probe's table: two heads per layer (mean ± 0.1) and their mean per layer."""
    heads = [
        {"layer": layer, "head": h, "metric": probe, "value": m + (0.1 if h else -0.1)}
        for layer, m in means.items()
        for h in (0, 1)
    ]
    mean = [{"layer": layer, "head": np.nan, "metric": f"{probe}_layer_mean", "value": m} for layer, m in means.items()]
    return ProbeResult(probe, model, pd.DataFrame(heads + mean), {"depth": DEPTH})


def fourier(model: str, high: Dict[int, float]) -> ProbeResult:
    """The Fourier probe: the highest kept frequency per layer, the (layers, K) curves as an array."""
    res = per_layer("feature_fourier", model, "high_freq_relative_log_amplitude", high)
    curves = np.array([np.linspace(0.0, h, 4) for h in high.values()])
    return ProbeResult(res.probe, model, res.table, res.meta, {"relative_log_amplitude": curves})


def spectrum(probe: str, model: str, means: Dict[int, float], of: str = "covariance") -> ProbeResult:
    """A singular-value probe: the per-layer mean in the table, the (layers, K) curves as an array."""
    res = per_layer(probe, model, "mean_relative_log_singular_value", means, of=of)
    curves = np.array([np.linspace(0.0, m, 5) for m in means.values()])
    return ProbeResult(res.probe, model, res.table, res.meta, {"relative_log_singular_value": curves})


def exact_replicates(res: ProbeResult, replicates: int = 8) -> ProbeResult:
    """``res`` with bootstrap replicates of every metric that all equal its values (a zero-width
    interval: the claims' verdicts then follow the sign of the delta)."""
    for metric, rows in res.table.groupby("metric", sort=False):
        res.arrays[array_key(str(metric))] = np.repeat(rows["value"].to_numpy()[None, :], replicates, axis=0)
    return res


def write_analysis(out: Path, broken_entropy: bool = False, manifest: Optional[dict] = None) -> Path:
    """A teacher and a student (distance, NMI, entropy, token spectra, Fourier; with zero-width
    intervals), a result without a figure, and a manifest with the pair and a skipped probe, under ``out``."""
    rows = {
        "teacher": dict(dist={1: 40.0, 2: 60.0, 3: 80.0}, nmi={1: 0.30, 2: 0.20, 3: 0.10}, sv=-2.0, high=-0.5),
        "student": dict(dist={1: 30.0, 2: 40.0, 3: 50.0}, nmi={1: 0.28, 2: 0.25, 3: 0.30}, sv=-1.0, high=-1.0),
    }
    for model, r in rows.items():
        exact_replicates(attention("attention_distance", model, r["dist"])).save(out / model)
        exact_replicates(attention("attention_nmi", model, r["nmi"])).save(out / model)
        entropy = attention("attention_entropy", model, {1: 1.0, 2: 2.0, 3: 3.0})
        if broken_entropy:  # a table without the head column: its figure fails, the others stay
            entropy = ProbeResult(entropy.probe, model, entropy.table.drop(columns="head"), entropy.meta)
        entropy.save(out / model)
        exact_replicates(spectrum("token_singular_values", model, {0: 0.0, 1: -0.5, 2: -1.0, 3: r["sv"]})).save(
            out / model
        )
        exact_replicates(fourier(model, {0: 0.0, 1: -0.2, 2: -0.3, 3: r["high"]})).save(out / model)
    ProbeResult("knn_accuracy", "student", pd.DataFrame({"metric": ["top1"], "value": [0.625]})).save(out / "student")
    default = {
        "models": {"student": {"spec": "timm:tiny_student", "skipped": {"hessian_trace": "needs labels"}}},
        "order": ["teacher", "student"],
        "pairs": [["teacher", "student"]],
    }
    (out / "analyze.json").write_text(json.dumps(default if manifest is None else manifest))
    return out
