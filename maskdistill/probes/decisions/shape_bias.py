"""Shape bias on cue-conflict images (Geirhos et al. 2019; paper Sec. 5, Figs. 8a and 11).

A cue-conflict image ``<shape><i>-<texture><j>.png`` carries the shape of one category and the texture
of another. Images whose two cues agree (80 of the 1,280) are dropped; of the remaining trials,
shape bias = #shape decisions / (#shape + #texture decisions). Decisions that are neither (another
category, or a human's "na") count in neither. Computed overall and per shape category, per observer.
Check: human subject-01 of model-vs-human's cue-conflict data -> 0.962.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd


def texture_category(imagename: str) -> str:
    """``'0001_s5n_s01_0_bird_00_bird3-clock2.png'`` or ``'bird3-clock2.png'`` -> ``'clock'``."""
    stem = str(imagename).rsplit("_", 1)[-1].rsplit(".", 1)[0]
    if "-" not in stem:
        raise ValueError(f"{imagename!r} is not a cue-conflict image name (<shape><i>-<texture><j>.png).")
    return stem.rsplit("-", 1)[-1].rstrip("0123456789")


def shape_category(imagename: str) -> str:
    stem = str(imagename).rsplit("_", 1)[-1].rsplit(".", 1)[0]
    return stem.rsplit("-", 1)[0].rstrip("0123456789")


def _counts(df: pd.DataFrame) -> pd.Series:
    n_shape = int(df["is_shape"].sum())
    n_texture = int(df["is_texture"].sum())
    both = n_shape + n_texture
    return pd.Series(
        {
            "n_trials": len(df),
            "n_shape": n_shape,
            "n_texture": n_texture,
            "fraction_shape": n_shape / len(df) if len(df) else np.nan,
            "fraction_texture": n_texture / len(df) if len(df) else np.nan,
            "shape_bias": n_shape / both if both else np.nan,
        }
    )


def shape_bias(responses: pd.DataFrame, by: Sequence[str] = ("subj",)) -> pd.DataFrame:
    """Tidy shape bias: one row per ``by`` group (default: observer) and ``category`` (``"all"`` plus
    each shape category) with ``n_trials`` (cue-conflict trials kept), ``n_shape``, ``n_texture``,
    ``fraction_shape``, ``fraction_texture`` and ``shape_bias`` (NaN where no decision followed either
    cue). The texture label is read from ``image_id`` (or ``imagename``); the shape label is the trial's
    ``category``."""
    if len(responses) == 0:
        raise ValueError("shape_bias got an empty response table.")
    names = responses["image_id"] if "image_id" in responses.columns else responses["imagename"]
    df = responses.assign(texture=names.map(texture_category))
    df = df.loc[df["category"] != df["texture"]]  # no cue conflict: the two cues agree
    if len(df) == 0:
        raise ValueError("shape_bias: every trial's shape and texture agree; no cue-conflict trials to score.")
    df = df.assign(is_shape=df["object_response"] == df["category"], is_texture=df["object_response"] == df["texture"])
    by = [b for b in by if b in df.columns]
    rows = []
    groups = df.groupby(by, sort=True) if by else [((), df)]
    for key, g in groups:
        key = key if isinstance(key, tuple) else (key,)
        base = dict(zip(by, key))
        rows.append({**base, "category": "all", **_counts(g).to_dict()})
        for cat, gc in g.groupby("category", sort=True):
            rows.append({**base, "category": cat, **_counts(gc).to_dict()})
    out = pd.DataFrame(rows)
    for c in ("n_trials", "n_shape", "n_texture"):
        out[c] = out[c].astype(int)
    return out


__all__ = ["shape_bias", "shape_category", "texture_category"]
