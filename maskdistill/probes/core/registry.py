"""The probe registry (paper Secs. 3-5: every measurement is a small registered function): every probe has the
signature ``probe(ctx, **params) -> ProbeResult``; the result is a tidy table (one row per
layer/head/index/... with ``metric`` and ``value`` columns), optional arrays and metadata, and saves
and loads itself as ``<probe>.csv`` + ``<probe>.json`` (+ ``<probe>.npz``). Probe names are a public
contract: ``maskdistill analyze --probes`` takes them."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional, Set

import numpy as np
import pandas as pd

from maskdistill import __version__

ProbeFn = Callable[..., "ProbeResult"]


@dataclass
class ProbeResult:
    probe: str
    model: str
    table: pd.DataFrame  # tidy: a "metric" and a "value" column, one row per measured number
    meta: Dict[str, Any] = field(default_factory=dict)  # parameters, conventions, model spec, #images
    arrays: Dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        missing = {"metric", "value"} - set(self.table.columns)
        if missing:
            raise ValueError(f"probe {self.probe!r}: its table lacks the column(s) {sorted(missing)}.")

    def save(self, folder: str | Path) -> Path:
        """Write ``folder/<probe>.csv``, ``.json`` and (if any arrays) ``.npz``; returns the CSV path.
        Crash-safe: the old JSON goes first, each file is written under a temporary name and
        renamed, and the JSON (which a resumed analysis reads to know the probe is done) comes
        last, so a result is finished exactly when its JSON exists."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        done = folder / f"{self.probe}.json"
        done.unlink(missing_ok=True)
        table = self.table.copy()
        if "model" not in table.columns:
            table.insert(0, "model", self.model)
        csv = folder / f"{self.probe}.csv"
        _atomic(csv, lambda fh: fh.write(table.to_csv(index=False).encode()))
        meta = dict(
            self.meta,
            probe=self.probe,
            model=self.model,
            version=self.meta.get("version", __version__),
            arrays=sorted(self.arrays),
        )
        npz = folder / f"{self.probe}.npz"
        if self.arrays:
            _atomic(npz, lambda fh: np.savez_compressed(fh, **self.arrays))
        elif npz.exists():
            npz.unlink()  # a stale array file of an earlier run would contradict the new table
        _atomic(done, lambda fh: fh.write((json.dumps(meta, indent=1, default=_jsonable) + "\n").encode()))
        return csv

    @classmethod
    def load(cls, folder: str | Path, probe: str) -> "ProbeResult":
        folder = Path(folder)
        csv = folder / f"{probe}.csv"
        if not csv.is_file():
            raise FileNotFoundError(f"no saved result of probe {probe!r} in {folder} ({csv.name} is missing).")
        meta = json.loads((folder / f"{probe}.json").read_text())
        arrays: Dict[str, np.ndarray] = {}
        if (folder / f"{probe}.npz").is_file():
            with np.load(folder / f"{probe}.npz") as z:
                arrays = {k: z[k] for k in z.files}
        return cls(
            probe=probe, model=str(meta.get("model", folder.name)), table=pd.read_csv(csv), meta=meta, arrays=arrays
        )


def _jsonable(x: Any) -> Any:
    if isinstance(x, (np.generic,)):
        return x.item()
    if isinstance(x, (np.ndarray,)):
        return x.tolist()
    if isinstance(x, Path):
        return str(x)
    if isinstance(x, tuple):
        return list(x)
    return repr(x)


@dataclass(frozen=True)
class ProbeSpec:
    name: str
    fn: ProbeFn
    needs: tuple  # what the context must provide: "attention", "tokens", "labels", "classifier", ...
    figure: str  # the paper figure(s) it reproduces, for the report
    doc: str
    shared: Optional[str] = None  # the statistics group of the shared streaming pass it reads, if any


_REGISTRY: Dict[str, ProbeSpec] = {}


def register(
    name: str, needs: tuple = (), figure: str = "", shared: Optional[str] = None
) -> Callable[[ProbeFn], ProbeFn]:
    """Decorator: ``@register("attention_distance", needs=("attention",), figure="Fig. 3a", shared="attention")``;
    ``shared`` names the statistics group of the shared pass the probe reads, so that the first pass
    computes the groups of every probe an analysis runs."""

    def deco(fn: ProbeFn) -> ProbeFn:
        if name in _REGISTRY and _REGISTRY[name].fn is not fn:
            raise ValueError(f"a probe named {name!r} is registered already ({_REGISTRY[name].fn.__module__}).")
        _REGISTRY[name] = ProbeSpec(name, fn, tuple(needs), figure, (fn.__doc__ or "").strip(), shared)
        return fn

    return deco


# The modules whose ``@register`` lines define the built-in probes (and whose imports register the
# statistics groups of the shared pass and the need checks of their families).
PROBE_MODULES = (
    "maskdistill.probes.representation.attention",
    "maskdistill.probes.representation.spectra",
    "maskdistill.probes.curvature.probes",
    "maskdistill.probes.decisions.probes",
    "maskdistill.probes.decisions.accuracy",
    "maskdistill.probes.curvature.plan",  # what each probe costs, for --dry-run
    "maskdistill.probes.decisions.plan",
)


def _atomic(path: Path, write: Callable[[Any], Any]) -> None:
    """``write(handle)`` into a temporary file, then rename it onto ``path`` (a killed run leaves
    no half-written file). A handle, not a name: ``np.savez`` would append ".npz" to a name."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as fh:
        write(fh)
    os.replace(tmp, path)


def load_builtin() -> None:
    """Import the probe families by name so that their ``@register`` lines run (``probes.core``
    never imports a family statically)."""
    import importlib

    for mod in PROBE_MODULES:
        importlib.import_module(mod)


def probe_names() -> List[str]:
    load_builtin()
    return sorted(_REGISTRY)


def get_probe(name: str) -> ProbeSpec:
    load_builtin()
    if name not in _REGISTRY:
        raise KeyError(f"unknown probe {name!r}; registered probes: {', '.join(sorted(_REGISTRY))}.")
    return _REGISTRY[name]


def resolve_probes(names: str | List[str]) -> List[ProbeSpec]:
    """``"all"``, ``"a,b"`` or a list -> specs (an unknown name raises, listing the registered ones)."""
    if isinstance(names, str):
        names = probe_names() if names.strip() == "all" else [n.strip() for n in names.split(",") if n.strip()]
    return [get_probe(n) for n in names]


def run_probe(name: str, ctx: Any, params: Optional[Dict[str, Any]] = None) -> ProbeResult:
    return get_probe(name).fn(ctx, **(params or {}))


def shared_groups(names: Iterable[str]) -> Set[str]:
    """The statistics groups of the shared pass that the probes ``names`` read (unknown names read none)."""
    load_builtin()
    return {_REGISTRY[n].shared for n in names if n in _REGISTRY and _REGISTRY[n].shared}


__all__ = [
    "ProbeResult",
    "ProbeSpec",
    "register",
    "load_builtin",
    "probe_names",
    "get_probe",
    "resolve_probes",
    "run_probe",
    "shared_groups",
]
