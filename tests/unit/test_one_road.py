"""One road from a scenario to its results: `xenlab run` on a sim lab, then `xenlab report
--profile`, judged on the run's own host inventory (the simulator runs in this process)."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from xenlab.cli import main
from xenlab.cli_report import REGRESSION_EXIT
from xenlab.results import RunResults

REPO = Path(__file__).resolve().parents[2]
SIM_LAB = REPO / "labs/xapi-sim-pool3.yaml"


def test_xenlab_run_then_report_gives_a_qualification_verdict_from_the_runs_inventory(tmp_path, monkeypatch):
    monkeypatch.setenv("XENLAB_RUN_DIR", str(tmp_path / "runs"))
    results = tmp_path / "results.json"
    run = CliRunner().invoke(main, ["run", str(REPO / "scenarios/live-migration.yaml"), "--lab", str(SIM_LAB),
                                    "--results", str(results)])
    # on a simulator the shipped tcg/kvm bounds and the guest's disk are not measured: exit 4, never passed
    assert run.exit_code == 4, run.output
    assert "scenario live-migration not measured" in run.output and "exit 4" in run.output
    saved = RunResults.read(results)
    assert saved.scenarios[0].outcome == "not_measured"
    assert [h.name for h in saved.inventory] == ["h1", "h2", "h3"]
    assert all(h.memory_mib == 2048 and h.accel == "sim" and h.nics for h in saved.inventory)
    assert saved.accel == "sim"

    report = CliRunner().invoke(main, ["report", str(results), "--out", str(tmp_path / "out"),
                                       "--profile", str(REPO / "qualification/default.yaml")])
    assert report.exit_code in (0, REGRESSION_EXIT), report.output
    assert "collected no inventory" not in report.output
    verdict = json.loads((tmp_path / "out" / "qualification.json").read_text())
    assert [h["name"] for h in verdict["hosts"]] == ["h1", "h2", "h3"]
    checks = {(c["subject"], c["check"]): c for c in verdict["checks"]}
    assert checks[("h1", "min_memory_mib")]["passed"] and checks[("h1", "min_cpus")]["passed"]
    assert checks[("live-migration", "downtime_p50")]["passed"]  # the simulated 0.2 s switch-over
    # what a simulator's xapi does not report is "not measured", never made up
    assert checks[("h1", "dom0_kernel")]["measured"] == "not measured"
