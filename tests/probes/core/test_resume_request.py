"""What a resumed analysis compares: the request of a result, with a fingerprint of the weight
files a spec reads, so that a model trained anew (same path, new weights) is analysed anew."""

from __future__ import annotations

import json
import os

from maskdistill.probes.core.resume import finished, model_request, probe_request, weights_fingerprint

SETTINGS = dict(images=8, seed=0, batch_size=4, hessian_images=None, bootstrap=None, labels="by-name")


def test_hub_names_have_no_fingerprint_and_local_weights_do(tmp_path):
    assert weights_fingerprint("timm:vit_small_patch16_224.augreg_in21k") == ""
    w = tmp_path / "w.safetensors"
    w.write_bytes(b"x" * 10)
    a = weights_fingerprint(f"timm:vit_small_patch16_224@{w}?num_classes=0")
    assert len(a) == 16
    os.utime(w, ns=(1, 2))  # rewritten weights: new modification time
    assert weights_fingerprint(f"timm:vit_small_patch16_224@{w}") != a


def test_a_run_folder_fingerprint_follows_its_checkpoints_not_its_logs(tmp_path):
    run = tmp_path / "run"
    (run / "checkpoints" / "step_1").mkdir(parents=True)
    (run / "checkpoints" / "step_1" / "model.safetensors").write_bytes(b"1")
    first = weights_fingerprint(str(run))
    (run / "metrics.csv").write_text("step,loss\n")
    assert weights_fingerprint(str(run)) == first
    (run / "checkpoints" / "step_2").mkdir()
    (run / "checkpoints" / "step_2" / "model.safetensors").write_bytes(b"2")
    assert weights_fingerprint(str(run)) != first


def test_finished_needs_the_same_request(tmp_path):
    base = model_request("timm:test_vit", "builtin:val", SETTINGS, "cpu")
    req = probe_request(base, {"k": 2})
    (tmp_path / "p.json").write_text(json.dumps({"request": req}))
    assert finished(tmp_path, "p", req)
    assert not finished(tmp_path, "p", probe_request(base, {"k": 3}))
    assert not finished(
        tmp_path, "p", probe_request(model_request("timm:test_vit", "builtin:val", SETTINGS, "cuda"), {"k": 2})
    )
    assert not finished(tmp_path, "missing", req)
    (tmp_path / "bad.json").write_text("{not json")
    assert not finished(tmp_path, "bad", req)
