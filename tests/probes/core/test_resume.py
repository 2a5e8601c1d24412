"""A killed ``maskdistill analyze`` started again with the same arguments keeps the probes it had
finished (their files untouched) and redoes only the rest, with the numbers of an uninterrupted
run; a changed argument redoes what it changes."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from maskdistill.probes.core.runner import run_analyze

pytestmark = pytest.mark.slow

MODEL = "timm:test_vit?pretrained=false&num_classes=10"
PROBES = "attention_distance,hessian_trace,token_singular_values"
ARGS = dict(images=8, batch_size=4, labels="folder-order", bootstrap=50, progress=False)
PARAMS = {"hessian_trace": {"max_iter": 8}}

# The analysis as a user runs it, except that the second probe kills its own process (SIGKILL: no
# handler, no clean-up) the moment it starts, i.e. after the first probe's files are written.
KILLED = textwrap.dedent("""
    import dataclasses, os, signal, sys
    from maskdistill.probes.core import registry
    registry.load_builtin()
    def killed(ctx, **params):
        os.kill(os.getpid(), signal.SIGKILL)
    registry._REGISTRY["hessian_trace"] = dataclasses.replace(registry._REGISTRY["hessian_trace"], fn=killed)
    from maskdistill.cli import main
    sys.exit(main(sys.argv[1:]))
""")


def _cli(out: Path) -> list:
    return [
        "analyze", "--model", f"vit={MODEL}", "--data", "builtin:val", "--probes", PROBES, "--out", str(out),
        "--images", "8", "--batch-size", "4", "--labels", "folder-order", "--bootstrap", "50",
        "--param", "hessian_trace.max_iter=8", "--no-report",
    ]  # fmt: skip


def _snapshot(folder: Path) -> dict:
    return {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in folder.iterdir()}


@pytest.fixture(scope="module")
def killed_then_resumed(tmp_path_factory):
    root = tmp_path_factory.mktemp("resume")
    script = root / "killed.py"
    script.write_text(KILLED)
    cmd = [sys.executable, str(script), *_cli(root / "out")]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
    after_kill = _snapshot(root / "out" / "vit")
    run_analyze({"vit": MODEL}, "builtin:val", PROBES, root / "out", params=PARAMS, **ARGS)
    run_analyze({"vit": MODEL}, "builtin:val", PROBES, root / "whole", params=PARAMS, **ARGS)
    return root, after_kill


def test_the_kill_left_only_the_first_probe(killed_then_resumed):
    _, after_kill = killed_then_resumed
    assert sorted(after_kill) == ["attention_distance.csv", "attention_distance.json", "attention_distance.npz"]


def test_the_rerun_keeps_the_finished_probe_untouched(killed_then_resumed):
    root, after_kill = killed_then_resumed
    now = _snapshot(root / "out" / "vit")
    for name, (mtime, data) in after_kill.items():
        assert now[name] == (mtime, data), f"{name} was rewritten"
    manifest = json.loads((root / "out" / "analyze.json").read_text())["models"]["vit"]
    assert manifest["resumed"] == ["attention_distance"]
    assert sorted(manifest["probes"]) == sorted(PROBES.split(","))


def test_the_rerun_completes_with_the_uninterrupted_numbers(killed_then_resumed):
    root, _ = killed_then_resumed
    for probe in PROBES.split(","):
        a = pd.read_csv(root / "out" / "vit" / f"{probe}.csv")
        b = pd.read_csv(root / "whole" / "vit" / f"{probe}.csv")
        assert list(a.metric) == list(b.metric), probe
        # the resumed shared pass computes fewer groups than the whole one: LAPACK may round apart
        np.testing.assert_allclose(a.value.to_numpy(float), b.value.to_numpy(float), rtol=1e-6, err_msg=probe)


def test_a_finished_analysis_runs_nothing_and_a_changed_argument_redoes(killed_then_resumed, caplog):
    root, _ = killed_then_resumed
    before = _snapshot(root / "out" / "vit")
    assert run_analyze({"vit": MODEL}, "builtin:val", PROBES, root / "out", params=PARAMS, **ARGS) == []
    assert _snapshot(root / "out" / "vit") == before
    changed = dict(PARAMS, hessian_trace={"max_iter": 9})
    with caplog.at_level("INFO"):
        written = run_analyze({"vit": MODEL}, "builtin:val", PROBES, root / "out", params=changed, **ARGS)
    assert [p.name for p in written] == ["hessian_trace.csv"]
    assert "redoing, made with other settings (params)" in caplog.text
    assert json.loads((root / "out" / "vit" / "hessian_trace.json").read_text())["request"]["params"] == {"max_iter": 9}


def test_results_without_their_manifest_entry_are_kept_and_recorded(killed_then_resumed):
    root, _ = killed_then_resumed
    (root / "whole" / "analyze.json").unlink()  # a kill after the last result, before the manifest
    before = _snapshot(root / "whole" / "vit")
    assert run_analyze({"vit": MODEL}, "builtin:val", PROBES, root / "whole", params=PARAMS, **ARGS) == []
    assert _snapshot(root / "whole" / "vit") == before
    entry = json.loads((root / "whole" / "analyze.json").read_text())["models"]["vit"]
    assert sorted(entry["probes"]) == sorted(PROBES.split(",")) and entry["resumed"] == entry["probes"]
