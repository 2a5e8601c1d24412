"""Response tables in model-vs-human's CSV format (Geirhos et al. 2021; paper Figs. 11, 12), so that our
model outputs and theirs -- human observers and their model zoo -- mix freely.

One CSV per observer and dataset, ``<dataset>_<subj>_session_1.csv``, with the columns
``subj, session, trial, rt, object_response, category, condition, imagename`` (human files of some
datasets spell it ``Session``: read case-insensitively). :func:`read_responses` adds two derived
columns: ``image_id`` (the image-specific suffix of ``imagename``: the part after its sixth ``_``, e.g.
``0001_s5n_s01_0_bird_00_bird3-bird2.png`` -> ``bird3-bird2.png``, the same for every observer) and
``dataset`` (the CSV's folder name). A trial is identified across observers by
``(dataset, condition, image_id)``.

Conditions are kept as the strings written in the files ("0.00", "c100", "true"); compare them with
:func:`condition_key` ("0.00" == "0.0" == "0", "true" == "True"), since model-vs-human's own tables
store pandas' re-formatting of the same values.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Iterable, List, Optional, Sequence, Union

import numpy as np
import pandas as pd

COLUMNS = ("subj", "session", "trial", "rt", "object_response", "category", "condition", "imagename")
_TEXT = ("subj", "object_response", "category", "condition", "imagename")
PathLike = Union[str, Path]


def image_id(imagename: str) -> str:
    """Image-specific part of a trial's image name (model-vs-human names have 7 ``_``-separated fields:
    trial, experiment tag, session/observer, condition, category, index, image file)."""
    parts = str(imagename).split("_", 6)
    return parts[6] if len(parts) == 7 else str(imagename)


def condition_key(condition: object) -> str:
    """Canonical form of a condition for comparisons: numbers by value, words lower-cased."""
    s = str(condition).strip()
    try:
        v = float(s)
    except ValueError:
        return s.lower()
    if math.isinf(v):
        return "inf"
    return repr(float(v)) if not v.is_integer() else str(int(v))


def is_human(subj: object) -> bool:
    """model-vs-human's convention: human observers are called ``subject-XX``."""
    return str(subj).startswith("subject-")


def _csv_files(paths: Union[PathLike, Iterable[PathLike]]) -> List[Path]:
    items = [paths] if isinstance(paths, (str, Path)) else list(paths)
    files: List[Path] = []
    for p in map(Path, items):
        if p.is_dir():
            found = sorted(p.glob("*.csv"))
            if not found:
                raise FileNotFoundError(
                    f"no response files (*.csv) in {p}; point at a model-vs-human "
                    f"raw-data/<dataset> folder or at CSV files."
                )
            files += found
        elif p.is_file():
            files.append(p)
        else:
            raise FileNotFoundError(f"response file or folder {p} does not exist.")
    return files


def read_responses(paths: Union[PathLike, Iterable[PathLike]], dataset: Optional[str] = None) -> pd.DataFrame:
    """One or more CSVs (or folders of CSVs) -> one DataFrame with ``COLUMNS`` (lower-cased) plus
    ``image_id`` and ``dataset`` (``dataset`` argument, else each file's folder name)."""
    frames = []
    for f in _csv_files(paths):
        df = pd.read_csv(
            f,
            dtype={c: str for c in ("subj", "Subj", "condition", "Condition")},
            keep_default_na=False,
            na_values={"rt": ["NaN", "nan", "NA", ""]},
        )
        df.columns = [str(c).strip().lower() for c in df.columns]
        missing = [c for c in COLUMNS if c not in df.columns]
        if missing:
            raise ValueError(
                f"{f} is not a model-vs-human response file: it lacks the column(s) {missing} (has {list(df.columns)})."
            )
        df = df[list(COLUMNS)].copy()
        for c in _TEXT:
            df[c] = df[c].astype(str)
        df["rt"] = pd.to_numeric(df["rt"], errors="coerce")
        df["image_id"] = df["imagename"].map(image_id)
        df["dataset"] = dataset or f.parent.name
        frames.append(df)
    return pd.concat(frames, ignore_index=True)


def response_filename(dataset: str, subj: str, session: int = 1) -> str:
    return f"{dataset}_{subj}_session_{session}.csv"


def write_responses(responses: pd.DataFrame, path: PathLike) -> Path:
    """Write ``COLUMNS`` in model-vs-human's format (missing response times as ``NaN``). ``path`` may be
    a folder: the file is then ``<folder>/<dataset>_<subj>_session_1.csv`` (one observer and dataset)."""
    missing = [c for c in COLUMNS if c not in responses.columns]
    if missing:
        raise ValueError(f"cannot write responses without the column(s) {missing}.")
    path = Path(path)
    if path.suffix.lower() != ".csv":
        subj = responses["subj"].unique()
        ds = responses["dataset"].unique() if "dataset" in responses.columns else []
        if len(subj) != 1 or len(ds) != 1:
            raise ValueError(
                f"write_responses to a folder needs one observer and one dataset (got subj {list(subj)[:4]}, "
                f"dataset {list(ds)[:4]}); pass a .csv path instead."
            )
        path = path / response_filename(str(ds[0]), str(subj[0]))
    path.parent.mkdir(parents=True, exist_ok=True)
    responses[list(COLUMNS)].to_csv(path, index=False, na_rep="NaN")
    return path


def model_imagename(trial: int, condition: str, category: str, img_id: str, tag: str = "dnn") -> str:
    """A model trial's ``imagename`` in model-vs-human's 7-field layout, so ``image_id`` round-trips."""
    for what, v in (("condition", condition), ("category", category)):
        if "_" in str(v):
            raise ValueError(f"{what} {v!r} contains '_', which would break model-vs-human's image names.")
    return f"{trial:04d}_{tag}_dnn_{condition}_{category}_00_{img_id}"


def make_responses(
    subj: str,
    dataset: str,
    categories: Sequence[str],
    conditions: Sequence[str],
    image_ids: Sequence[str],
    decisions: Sequence[str],
    session: int = 1,
) -> pd.DataFrame:
    """A model's response table: one row per trial, ``rt`` NaN (models have none), trials numbered 1..n."""
    n = len(decisions)
    if not (len(categories) == len(conditions) == len(image_ids) == n):
        raise ValueError(
            f"one category, condition and image id per decision needed: got {len(categories)}, "
            f"{len(conditions)}, {len(image_ids)} for {n} decisions."
        )
    trial = np.arange(1, n + 1)
    names = [
        model_imagename(int(t), str(c), str(k), str(i)) for t, c, k, i in zip(trial, conditions, categories, image_ids)
    ]
    return pd.DataFrame(
        {
            "subj": subj,
            "session": session,
            "trial": trial,
            "rt": np.nan,
            "object_response": list(map(str, decisions)),
            "category": list(map(str, categories)),
            "condition": list(map(str, conditions)),
            "imagename": names,
            "image_id": list(map(str, image_ids)),
            "dataset": dataset,
        }
    )


__all__ = [
    "COLUMNS",
    "condition_key",
    "image_id",
    "is_human",
    "make_responses",
    "model_imagename",
    "read_responses",
    "response_filename",
    "write_responses",
]
