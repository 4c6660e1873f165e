"""The HTML report renders in a real browser (headless Chromium), with nothing fetched."""

from __future__ import annotations

import base64
import io
import re
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
    assert dom.stdout.count("<img class=\"plot\"") == 7 and dom.stdout.count("<svg class=\"timeline\"") == 2
    assert "PASS: " in dom.stdout


def test_the_heartbeat_plot_of_a_failover_renders_with_its_silence_labelled(tmp_path):
    """The plot users look for first, as Chromium got it: an image of the guest's heartbeats
    with the silence shaded, and its measured length written beside it."""
    files = write_reports(synthetic_run(), tmp_path / "report")
    dom = browse(tmp_path, files.html.as_uri(), "--dump-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    [src] = re.findall(r'<img class="plot" alt="heartbeats around cut: power_cut on h2" src="data:image/png;base64,'
                       r'([A-Za-z0-9+/=]+)"', dom.stdout)
    pixels = matplotlib.image.imread(io.BytesIO(base64.b64decode(src)), format="png")
    shaded = (abs(pixels[..., 0] - 0.96) < 0.03) & (abs(pixels[..., 1] - 0.84) < 0.04) & (pixels[..., 2] < 0.9)
    assert shaded.mean() > 0.15  # most of the plot is the 51.8 s silence, shaded red
    assert re.search(r'<b class="silence">silence 51\.8\d s</b>', dom.stdout)  # from the last heartbeat to the next
    assert "its heartbeat counter restarted" in dom.stdout  # a power cut reboots the guest
    page = tmp_path / "heartbeats.png"
    done = browse(tmp_path, files.html.as_uri(), "--window-size=1200,6000", f"--screenshot={page}")
    assert done.returncode == 0 and matplotlib.image.imread(str(page)).std() > 0.05
