"""Resuming an analysis: a killed ``maskdistill analyze`` started again with the same arguments
keeps the probes (and models) already finished and redoes only the rest.

Every saved result records the request that made it (``meta["request"]``: the model's spec, the
data, the images, seed and batch size, the Hessian images, the bootstrap, the label mode, the
device type, the probe's own parameters, and a fingerprint of the weight files a spec reads from
disk, so a run folder trained anew is analysed anew); a result counts as finished when its JSON -- written
last (``ProbeResult.save``) -- holds the same request. The number of processes is not part of the
request: a run under torchrun gives the numbers one process gives, so either may finish the other's
work. A model all of whose probes are finished, or were skipped for this model and request before,
is not even loaded.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

log = logging.getLogger(__name__)

REQUEST = "request"


def normalised(obj: Any) -> Any:
    """``obj`` as it reads back from JSON (tuples as lists, keys as strings), for comparison."""
    return json.loads(json.dumps(obj, default=str, sort_keys=True))


WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin", ".ckpt")  # not .json/.npz: analysis folders hold those


def weights_fingerprint(spec: str) -> str:
    """A digest of the size and modification time of every weight file that ``spec`` names on disk
    (a checkpoint file, a run or export folder); "" for a spec that reads nothing local (a hub name).
    Only file metadata is read: cheap for a 1 GB checkpoint, and any rewrite changes it."""
    base = spec.split("?", 1)[0]
    for prefix in ("timm:", "local-dir:", "open_clip:"):
        base = base[len(prefix) :] if base.startswith(prefix) else base
    parts = [p for p in base.split("@") if p]
    stats = []
    for part in parts:
        path = Path(part).expanduser()
        files = [path] if path.is_file() else sorted(path.rglob("*")) if path.is_dir() else []
        for f in files:
            if f.is_file() and (f == path or f.suffix in WEIGHT_SUFFIXES):
                st = f.stat()
                stats.append(f"{f}:{st.st_size}:{st.st_mtime_ns}")
    return hashlib.sha256("\n".join(stats).encode()).hexdigest()[:16] if stats else ""


def model_request(spec: str, data: str, settings: Mapping[str, Any], device: str) -> Dict[str, Any]:
    """What every probe of one model shares of its request."""
    boot = settings.get("bootstrap")
    return normalised(
        {
            "spec": spec,
            "weights": weights_fingerprint(spec),
            "data": data,
            "images": settings["images"],
            "seed": settings["seed"],
            "batch_size": settings["batch_size"],
            "hessian_images": settings.get("hessian_images"),
            "bootstrap": getattr(boot, "replicates", 0) if boot is not None else 0,
            "labels": settings.get("labels", "by-name"),
            "device": device,
        }
    )


def probe_request(model: Mapping[str, Any], params: Mapping[str, Any]) -> Dict[str, Any]:
    """One probe's request: the model's and the probe's own parameters."""
    return normalised(dict(model, params=dict(params)))


def saved_request(folder: Path, probe: str) -> Optional[Dict[str, Any]]:
    """The request recorded in ``folder/<probe>.json`` (None: no finished result there)."""
    path = Path(folder) / f"{probe}.json"
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text()).get(REQUEST)
    except (OSError, ValueError):  # unreadable: treat as not finished, it is redone
        return None


def finished(folder: Path, probe: str, request: Mapping[str, Any]) -> bool:
    """Whether ``folder`` holds a finished result of ``probe`` made by ``request``; a result made
    by another request is said so in the log (it will be redone and replaced)."""
    found = saved_request(folder, probe)
    if found is None:
        return False
    if found == normalised(request):
        return True
    changed = sorted(k for k in set(found) | set(request) if found.get(k) != request.get(k))
    log.info("%s/%s: redoing, made with other settings (%s)", Path(folder).name, probe, ", ".join(changed))
    return False


def finished_probes(
    folder: Path,
    probes: Sequence[str],
    params: Mapping[str, Mapping[str, Any]],
    base: Mapping[str, Any],
    entry: Optional[Mapping[str, Any]],
    request: Mapping[str, Any],
) -> Tuple[List[str], Dict[str, str]]:
    """(the probes whose result in ``folder`` has this request, the probes the manifest ``entry``
    recorded as skipped for this model and request, with the reason)."""
    kept = [p for p in probes if finished(folder, p, probe_request(base, params.get(p, {})))]
    before = {k: v for k, v in skipped_before(entry, request).items() if k in set(probes)}
    return kept, before


def skipped_before(entry: Optional[Mapping[str, Any]], request: Mapping[str, Any]) -> Dict[str, str]:
    """The probes a manifest entry recorded as skipped (with the reason) under the same request."""
    if not entry or entry.get(REQUEST) != normalised(request):
        return {}
    return dict(entry.get("skipped", {}))


__all__ = [
    "finished_probes",
    "WEIGHT_SUFFIXES",
    "weights_fingerprint",
    "REQUEST",
    "finished",
    "model_request",
    "normalised",
    "probe_request",
    "saved_request",
    "skipped_before",
]
