"""Analysis input like training input: an image folder with one corrupt JPEG and one empty PNG is
analysed with both skipped, listed in every result's metadata, ``analyze.json`` and the report;
past ``--max-unreadable-share`` the analysis stops with one line. The check decodes each file, so a
truncated JPEG is caught too, and the images skipped are replaced by the next ones of the seeded
order."""

from __future__ import annotations

import json

import numpy as np
from PIL import Image

from maskdistill.cli import main
from maskdistill.data.analysis_data import parse_data

VIT = "vit=timm:test_vit?pretrained=false&img_size=32"


def _damaged_folder(root, pngs):
    pngs(root, n_per_class=20)  # 40 readable PNGs in cats/, dogs/
    bad_jpeg = root / "cats" / "corrupt.jpg"
    bad_jpeg.write_bytes(b"\xff\xd8\xff\xe0 not really a JPEG " * 20)
    empty = root / "dogs" / "empty.png"
    empty.write_bytes(b"")
    return sorted([str(bad_jpeg), str(empty)])


def test_an_analysis_skips_and_reports_the_unreadable_images(tmp_path, pngs, capsys, restore_logging):
    bad = _damaged_folder(tmp_path / "images", pngs)
    out = tmp_path / "analysis"
    argv = ["analyze", "--model", VIT, "--data", str(tmp_path / "images"), "--probes", "attention_distance"]
    rc = main([*argv, "--images", "64", "--batch-size", "16", "--out", str(out)])
    assert rc == 0, capsys.readouterr().err
    entry = json.loads((out / "analyze.json").read_text())["models"]["vit"]
    assert sorted(entry["unreadable_images"]) == bad and entry["images"] == 40
    meta = json.loads((out / "vit" / "attention_distance.json").read_text())
    assert sorted(meta["images_unreadable"]) == bad
    assert "vit: 2 unreadable images skipped" in (out / "report.html").read_text()

    rc = main([*argv, "--images", "64", "--max-unreadable-share", "0.01", "--no-report", "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 1 and "Traceback" not in err
    (line,) = [x for x in err.splitlines() if x.startswith("maskdistill:")]
    assert line.startswith("maskdistill: stopped: 2 unreadable images among 42 examined")
    assert "--max-unreadable-share" in line


def test_a_truncated_image_is_replaced_by_the_next_of_the_order(tmp_path, pngs):
    pngs(tmp_path / "flat", n_per_class=6, classes=("",))
    jpeg = tmp_path / "flat" / "cut.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(jpeg, quality=95)
    jpeg.write_bytes(jpeg.read_bytes()[:-400])  # opens, fails to decode
    data = parse_data(str(tmp_path / "flat"))
    data.max_unreadable_share = 0.5
    full = np.random.default_rng(1).permutation(7)
    sub = data.subset(4, seed=1)
    folder = sub.dataset
    cut = [i for i, (p, _) in enumerate(folder.samples) if p.name == "cut.jpg"][0]
    want = [int(i) for i in full if i != cut][:4]
    assert cut in full[:4]  # the seed puts the truncated file among the first four
    assert sub.indices == want and sub.unreadable == [str(jpeg)]
    assert len(sub) == 4


def test_a_signal_ends_an_analysis_with_one_line(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]
    env = dict(os.environ, PYTHONPATH=str(repo), OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    argv = ["analyze", "--model", VIT, "--data", "builtin:val", "--probes", "all", "--images", "5000"]
    # (the signal comes during the shared pass: a probe that raises is recorded and the others go on,
    # an Interrupted must not be)
    proc = subprocess.Popen(
        [sys.executable, "-m", "maskdistill", *argv, "--out", str(tmp_path / "a")],
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stderr is not None
    seen = []
    for line in proc.stderr:
        seen.append(line)
        if "attention/tokens" in line or "skipping ood_accuracy" in line:  # inside the probes
            proc.send_signal(signal.SIGTERM)
            break
    err = "".join(seen) + proc.stderr.read()
    assert proc.wait(timeout=60) == 128 + signal.SIGTERM, err
    assert "Traceback" not in err
    (line,) = [x for x in err.splitlines() if x.startswith("maskdistill:")]
    assert line.startswith("maskdistill: interrupted: SIGTERM received; stopped. The probes finished before")
    assert line.endswith("run the same command again to keep them and do the rest.")


def test_unreadable_stimuli_are_skipped_and_listed(tmp_path):
    from maskdistill.probes.decisions.stimuli import read_stimuli

    folder = tmp_path / "edges"
    for c in ("cat", "dog"):
        (folder / c).mkdir(parents=True)
        for i in range(10):
            Image.new("RGB", (8, 8), (20 * i, 0, 0)).save(folder / c / f"{c}{i}.png")
    (folder / "dog" / "dog99.png").write_bytes(b"")
    st = read_stimuli(folder)
    assert len(st) == 20 and st.unreadable == [str(folder / "dog" / "dog99.png")]
    assert st.subset(3).unreadable == st.unreadable and len(st.subset(3)) == 6
