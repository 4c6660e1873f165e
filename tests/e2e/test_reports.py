"""pytest runs a scenario file on the shared lab and writes every report a CI or a
qualification engineer reads: JUnit, results JSON, HTML (rendered in a real browser)
and the hardware-qualification report. It runs scenarios/live-migration-once.yaml (one
move, the same bounds as each round of live-migration.yaml): the five-round ping-pong took
13 minutes of a CI run here (about 130 s a migration under TCG) and adds nothing a report
shows that one round does not; README's first command runs the ping-pong."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from xenlab.results import RunResults

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parents[2]


def test_live_migration_scenario_under_pytest_writes_all_reports(pool2, tmp_path):
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", str(REPO / "scenarios/live-migration-once.yaml"), "--reuse-lab",
         "--lab", pool2.name, "--xenlab-report", str(out), "-p", "no:cacheprovider", "-q"],
        cwd=tmp_path, env=dict(os.environ), capture_output=True, text=True, timeout=1200, check=False)
    print(proc.stdout[-3000:])
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]

    junit = ET.parse(out / "junit.xml").getroot()
    [case] = junit.iter("testcase")
    assert case.get("name") == "live-migration-once" and case.find("failure") is None
    properties = {p.get("name"): p.get("value") for p in case.iter("property")}
    assert float(properties["downtime_p50"]) > 0
    # a repeat's rounds are named by step and round: the one move is step 2, round 0
    assert float(properties["2.0.downtime"]) == pytest.approx(float(properties["downtime_p50"]), abs=0.001)
    assert "never arrived" in properties["heartbeats_lost.meaning"]  # every figure says what it counts
    assert "10 ms heartbeat slots" in properties["heartbeat_slots_empty.meaning"]

    results = RunResults.read(out / "results.json")
    [scenario] = results.scenarios
    assert (scenario.name, scenario.outcome, scenario.toolstack) == ("live-migration-once", "passed", "xl")
    assert scenario.summary["migrations"].value == 1
    assert len(scenario.series["downtime"]) == 1
    assert {h.name for h in results.inventory} == {"h1", "h2"}
    assert all(h.xen_version.startswith("4.17") and h.accel == "tcg" for h in results.inventory)

    rounds = next(step for step in scenario.steps if step.kind == "repeat").substeps
    assert len(rounds) == 1
    for step in rounds:  # each migration's heartbeat timeline, its silence exactly the measured downtime
        [timeline] = step.timelines
        assert timeline.guest == "vm1" and timeline.event.startswith("migration of vm1 ")
        assert timeline.silence_s == pytest.approx(step.figures["downtime"].value, abs=0.001)
        assert {"migration start", "migration end"} <= {m.label for m in timeline.marks}
        assert timeline.start < timeline.silence_start < timeline.silence_end <= timeline.end
        inside = [c for i, c in enumerate(timeline.counts)
                  if timeline.silence_start < timeline.start + i * timeline.bucket_s
                  and timeline.start + (i + 1) * timeline.bucket_s <= timeline.silence_end]
        assert inside and not any(inside)  # nothing heard in the silence, heartbeats on both sides of it
        print(f"{step.name}: downtime {step.figures['downtime'].value} s, {len(timeline.counts)} buckets of "
              f"{timeline.bucket_s} s, {sum(timeline.counts)} heartbeats")

    html = (out / "report.html").read_text()
    assert "live-migration-once" in html and "http://" not in html and "https://" not in html
    assert html.count('<img class="plot" alt="heartbeats around migration of vm1 ') == 1
    for step in rounds:
        assert f"silence {step.timelines[0].silence_s:.2f} s" in html
    assert "what the figures mean" in html and "heartbeat_slots_empty" in html

    qualify = subprocess.run([sys.executable, "-m", "xenlab.cli", "report", str(out / "results.json"), "--out",
                              str(out), "--profile", str(REPO / "qualification/default.yaml")],
                             capture_output=True, text=True, timeout=120, check=False)
    assert qualify.returncode in (0, 3), qualify.stderr  # 3: some check failed, which is a verdict
    verdict = (qualify.stdout + qualify.stderr).strip().splitlines()[-1]
    assert verdict.startswith(("PASS", "FAIL")), verdict
    assert "downtime_p50" in (out / "qualification.html").read_text()

    chromium = shutil.which("chromium")
    assert chromium, "chromium is needed to check the report renders: run ./setup.sh"
    shot = tmp_path / "report.png"
    subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--no-first-run",
                    f"--user-data-dir={tmp_path / 'chromium'}", "--window-size=1200,2000",
                    f"--screenshot={shot}", (out / "report.html").as_uri()],
                   capture_output=True, timeout=120, check=False)
    assert shot.exists() and shot.stat().st_size > 20_000
