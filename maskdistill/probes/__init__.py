"""Probes: what the paper measures, as registered functions returning tidy results (Secs. 3-5)."""

from maskdistill.probes.core.registry import (
    ProbeResult,
    ProbeSpec,
    get_probe,
    probe_names,
    register,
    resolve_probes,
    run_probe,
)

__all__ = ["ProbeResult", "ProbeSpec", "get_probe", "probe_names", "register", "resolve_probes", "run_probe"]
