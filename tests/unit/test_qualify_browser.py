"""The qualification HTML renders in headless Chromium: verdicts table first, plots drawn."""

from __future__ import annotations

import matplotlib.image
from test_qualify_model import _report, sample_checks
from test_report_browser import browse

from xenlab.qualify.report import write_report


def test_qualification_html_renders_in_headless_chromium(tmp_path):
    files = write_report(_report(sample_checks()), tmp_path / "report")
    shot = tmp_path / "qualify.png"
    done = browse(tmp_path, files.html.as_uri(), "--window-size=1200,2400", f"--screenshot={shot}")
    assert done.returncode == 0 and shot.exists(), done.stderr[-2000:]
    pixels = matplotlib.image.imread(str(shot))
    assert pixels.shape[:2] == (2400, 1200) and pixels.std() > 0.05  # text, tables and plots, not blank
    dom = browse(tmp_path, files.html.as_uri(), "--dump-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert dom.stdout.index("<h2>Verdicts</h2>") < dom.stdout.index("<h2>Plots</h2>")
    assert dom.stdout.count('<img class="plot"') == 3
    assert "FAIL: 2 passed, 1 failed, 1 not run" in dom.stdout
