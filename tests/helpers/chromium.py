"""Render a report in headless Chromium and read back what its images became: the check that
``report.html`` opens in a real browser with every figure present. Skips (naming the install
command) where no Chromium is installed; `make test` installs it from Debian when it can."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import List, Tuple

import pytest

CHROMIUM_NAMES = ("chromium-headless-shell", "chromium", "chromium-browser", "google-chrome", "headless_shell")
CHROMIUM_APT = "apt-get install -y --no-install-recommends chromium-headless-shell"
REPORTER = (
    "<script>window.addEventListener('load',function(){document.body.setAttribute('data-imgs',"
    "JSON.stringify([].map.call(document.images,function(i){return [i.complete,i.naturalWidth,"
    "i.naturalHeight];})));});</script></body>"
)


def chromium() -> str:
    """The browser's path; skips the test when none is installed."""
    for name in CHROMIUM_NAMES:
        path = shutil.which(name)
        if path:
            return path
    names = ", ".join(CHROMIUM_NAMES)
    pytest.skip(f"no headless Chromium found ({names}); `make test` installs it with: {CHROMIUM_APT}")


def rendered_images(report: Path, scratch: Path) -> List[Tuple[bool, int, int]]:
    """(loaded, natural width, natural height) of every <img> of ``report`` as Chromium rendered it
    (a copy with a reporter script in ``scratch``; the report itself has none)."""
    browser = chromium()
    page = scratch / "report_probe.html"
    page.write_text(report.read_text(encoding="utf-8").replace("</body>", REPORTER), encoding="utf-8")
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"]
    run = subprocess.run(
        [browser, *flags, "--virtual-time-budget=15000", "--dump-dom", page.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
    )
    found = re.search(r'data-imgs="([^"]*)"', run.stdout)
    assert found, f"Chromium did not render the page: {run.stderr[-2000:]}"
    return [tuple(x) for x in json.loads(found.group(1).replace("&quot;", '"'))]


__all__ = ["CHROMIUM_APT", "CHROMIUM_NAMES", "chromium", "rendered_images"]
