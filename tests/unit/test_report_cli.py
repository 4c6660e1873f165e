"""`xenlab report`: html + qualification from a results file; clear errors and exit codes."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner
from test_report_samples import synthetic_run

from xenlab.cli import main

REPO = Path(__file__).resolve().parents[2]
PROFILE = str(REPO / "qualification/default.yaml")


def test_report_writes_html_and_qualification(tmp_path):
    results = synthetic_run().write(tmp_path / "results.json")
    done = CliRunner().invoke(main, ["report", str(results), "--out", str(tmp_path / "out"), "--profile", PROFILE])
    assert done.exit_code == 0, done.output
    assert "PASS: " in done.output
    assert {p.name for p in (tmp_path / "out").iterdir()} == {"report.html", "qualification.html",
                                                              "qualification.json"}


def test_a_failed_qualification_exits_3(tmp_path):
    run = synthetic_run()
    run.inventory[0].memory_mib = 512
    results = run.write(tmp_path / "results.json")
    done = CliRunner().invoke(main, ["report", str(results), "--out", str(tmp_path / "out"), "--profile", PROFILE])
    assert done.exit_code == 3 and "FAIL: 1 of " in done.output and "h1 min_memory_mib" in done.output


def test_without_a_profile_only_the_html(tmp_path):
    results = synthetic_run().write(tmp_path / "results.json")
    done = CliRunner().invoke(main, ["report", str(results), "--out", str(tmp_path / "out")])
    assert done.exit_code == 0 and [p.name for p in (tmp_path / "out").iterdir()] == ["report.html"]


def test_bad_inputs_are_one_clear_message(tmp_path):
    results = synthetic_run().write(tmp_path / "results.json")
    profile = tmp_path / "p.yaml"
    profile.write_text("name: p\nmetrics:\n  downtime_p50: soon\n")
    done = CliRunner().invoke(main, ["report", str(results), "--out", str(tmp_path), "--profile", str(profile)])
    assert done.exit_code == 2 and f"{profile}:3: metrics.downtime_p50" in " ".join(done.output.split())
    (tmp_path / "junk.json").write_text('{"schema": "xenlab.results/1", "lab": 3}')
    done = CliRunner().invoke(main, ["report", str(tmp_path / "junk.json"), "--out", str(tmp_path)])
    assert done.exit_code == 2 and "not a xenlab results file (lab:" in " ".join(done.output.split())
    done = CliRunner().invoke(main, ["report", str(tmp_path / "missing.json"), "--out", str(tmp_path)])
    assert done.exit_code == 2 and "missing.json: no such results file" in " ".join(done.output.split())
