"""The HTML report renders in a real browser (headless Chromium), with nothing fetched."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import matplotlib.image
from test_report_samples import synthetic_run

from xenlab.report import write_reports
from xenlab.report.qualification import load_profile

REPO = Path(__file__).resolve().parents[2]
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars"]


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    raise AssertionError("headless Chromium is needed to check the HTML report: run ./setup.sh "
                         "(Debian package `chromium`)")


def browse(tmp_path: Path, url: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([chromium(), *FLAGS, f"--user-data-dir={tmp_path / 'profile'}", *args, url],
                          capture_output=True, text=True, timeout=120, check=False)


def test_report_renders_in_headless_chromium(tmp_path):
    files = write_reports(synthetic_run(), tmp_path / "report", load_profile(REPO / "qualification/default.yaml"))
    for page in (files.html, files.qualification_html):
        shot = tmp_path / f"{page.stem}.png"
        done = browse(tmp_path, page.as_uri(), "--window-size=1200,2400", f"--screenshot={shot}")
        assert done.returncode == 0 and shot.exists(), done.stderr[-2000:]
        pixels = matplotlib.image.imread(str(shot))
        assert pixels.shape[:2] == (2400, 1200)
        assert shot.stat().st_size > 50_000 and pixels.std() > 0.05  # text, tables and plots, not a blank page
    dom = browse(tmp_path, files.html.as_uri(), "--dump-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert dom.stdout.count("<img class=\"plot\"") == 3 and dom.stdout.count("<svg class=\"timeline\"") == 2
    assert "PASS: " in dom.stdout
