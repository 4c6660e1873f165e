"""The HTML report: self-contained (no URL anywhere), escaped, showing what the run measured."""

from __future__ import annotations

import base64
import io
import re
from pathlib import Path

import matplotlib.image
from test_report_samples import synthetic_run

from xenlab.report import write_reports
from xenlab.report.html import downtime_samples, failover_phases, render_run_html
from xenlab.report.qualification import load_profile
from xenlab.results import RunResults

REPO = Path(__file__).resolve().parents[2]


def images(html: str) -> list[bytes]:
    return [base64.b64decode(b) for b in re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html)]


def test_report_is_self_contained_and_its_plots_are_real_pngs(tmp_path):
    files = write_reports(synthetic_run(), tmp_path, load_profile(REPO / "qualification/default.yaml"))
    for path in (files.html, files.qualification_html):
        text = path.read_text()
        assert not re.search(r"https?://", text), f"{path.name} references the network"
        assert not re.search(r"<(script|link)\b", text) and "@media print" in text
    html = files.html.read_text()
    pngs = images(html)
    assert len(pngs) == 7  # bring-up, downtime distribution, failover phases; 3 migrations' and 1 failover's heartbeats
    for png in pngs:
        pixels = matplotlib.image.imread(io.BytesIO(png), format="png")
        assert pixels.shape[0] > 100 and pixels.shape[1] > 300 and pixels.std() > 0.05


def test_timelines_have_one_bar_per_step_and_the_verdict_comes_first(tmp_path):
    run = synthetic_run(downtimes=[1.0, 2.0, 6.0])
    html = render_run_html(run)
    svgs = re.findall(r"<svg class=\"timeline\".*?</svg>", html, re.DOTALL)
    assert [s.count("<rect") for s in svgs] == [3, 2]
    assert "downtime 6.0 s is not &lt; 5 s" in html
    run.scenarios[0].outcome = "failed"
    files = write_reports(run, tmp_path, load_profile(REPO / "qualification/default.yaml"))
    page = files.html.read_text()
    assert page.index('class="verdict fail"') < page.index("<h2>Bring-up</h2>")
    assert files.qualification.verdict.startswith("FAIL: 1 of ")
    assert "run scenarios_passed" in files.qualification.verdict
    assert files.qualification.verdict in files.qualification_html.read_text()


def test_user_text_is_escaped():
    run = synthetic_run()
    run.scenarios[0].name = "<script>alert(1)</script>"
    run.scenarios[0].steps[0].message = "a & b <i>"
    html = render_run_html(run)
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "a &amp; b &lt;i&gt;" in html


def test_an_empty_run_still_renders_and_says_what_is_missing():
    html = render_run_html(RunResults(lab="empty"))
    assert "bring-up stages per host: no data in this run" in html
    assert "no inventory collected" in html and not images(html)


def test_plots_read_the_run_not_a_template():
    run = synthetic_run(downtimes=[1.5, 2.5])
    assert downtime_samples(run) == [1.5, 2.5]
    [failover] = failover_phases(run)
    assert failover.milestones == {"detected": 31.0, "fenced": 33.5, "guest back": 51.8}
    run.scenarios[0].series = {}  # without series, the steps' figures count, in seconds
    run.scenarios[0].steps[0].figures["downtime"].unit = "ms"
    run.scenarios[0].steps[0].figures["downtime"].value = 1500
    assert downtime_samples(run) == [1.5, 2.5]
