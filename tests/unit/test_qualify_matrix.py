"""`xenlab qualify --matrix`: a row per combination (worst verdict per check kind, key figures
summed up the way a reader compares them), the combination table first in the HTML, each
combination's own JUnit suite, and labs that are someone else's never touched."""

from __future__ import annotations

import json
import os
import xml.etree.ElementTree as ET
from pathlib import Path

from click.testing import CliRunner

from xenlab.cli import main
from xenlab.matrix import load_matrix
from xenlab.qualify.matrix_run import MatrixReport, not_run_row, row_of, run_matrix, write_matrix_report
from xenlab.qualify.model import QualifyReport, judge, not_run, outcome_of
from xenlab.qualify.report import write_report

REPO = Path(__file__).resolve().parents[2]
MATRIX = REPO / "qualification/matrix-firmware-nic.yaml"
PROFILE = REPO / "qualification/quick.yaml"


def report_of(lab: str, checks) -> QualifyReport:
    return QualifyReport(profile="quick", profile_file=str(PROFILE), lab=lab, backend="qemu", accel="tcg",
                         started_at=1_764_000_000.0, ended_at=1_764_000_600.0, checks=checks)


def two_hosts_measured() -> list:
    boot = [outcome_of(f"boot/{h}", "boot", h, [judge("to_ssh", s, "s", {"to_ssh": "< 900s"})], 0.0)
            for h, s in (("h1", 61.0), ("h2", 75.5))]
    net = [outcome_of(f"network/{p}/lab", "network", p, [judge("throughput", t, "Mbit/s", {"throughput": "> 5 Mbit/s"})],
                      0.0) for p, t in (("h1-h2", 212.0), ("h2-h1", 3.0))]
    return [*boot, *net, not_run("failover", "failover", "pool", "the profile leaves failover out")]


def test_a_row_takes_the_worst_verdict_per_kind_and_the_figures_a_reader_compares():
    plan = load_matrix(MATRIX)
    combination = plan.combinations[3]  # bios + e1000
    row = row_of(combination, report_of(combination.name, two_hosts_measured()), 754.0,
                 f"{combination.name}/qualification.html")
    assert row.hardware == {"firmware": "bios", "nic": "e1000"}
    assert row.verdict == "failed" and row.reason == "network/h2-h1/lab"
    assert row.checks == {"boot": "passed", "network": "failed", "failover": "not_run"}
    assert row.key_figures == {"boot to_ssh": "75.5 s", "network throughput": "3 Mbit/s"}  # slowest, lowest
    assert row.counts == {"passed": 3, "failed": 1, "not_measured": 0, "not_run": 1}


def test_matrix_report_puts_the_combination_table_first_and_keeps_each_suite(tmp_path):
    plan = load_matrix(MATRIX)
    ran, never = plan.combinations[0], plan.combinations[5]
    own = report_of(ran.name, two_hosts_measured()[:2])
    write_report(own, tmp_path / ran.name)
    report = MatrixReport(profile="quick", matrix=plan.matrix, axes=plan.axes, started_at=1.0, ended_at=2.0,
                          rows=[row_of(ran, own, 300.0, f"{ran.name}/qualification.html"),
                                not_run_row(never, "did not come up or broke off: OVMF missing")])
    write_matrix_report(report, tmp_path)
    html = (tmp_path / "matrix.html").read_text()
    assert html.index("<h2>Combinations</h2>") < html.index("Why a combination failed or did not run")
    assert f'href="{ran.name}/qualification.html"' in html and "OVMF missing" in html
    assert not report.passed and report.verdict.startswith("FAIL: 1 of 2 combinations passed")
    suites = ET.parse(tmp_path / "matrix-junit.xml").getroot()
    names = [s.get("name") for s in suites.findall("testsuite")]
    assert names[0].startswith(f"{ran.name}: ") and names[1] == never.name
    assert len(suites.findall("testsuite")[0].findall("testcase")) == 2
    assert suites.findall("testsuite")[1].find("testcase/failure") is not None
    again = MatrixReport.model_validate(json.loads((tmp_path / "matrix.json").read_text()))
    assert again.rows == report.rows and json.loads((tmp_path / "matrix.json").read_text())["schema"] == \
        "xenlab.qualify-matrix/1"


def test_a_combination_whose_lab_is_up_already_is_left_alone(tmp_path, monkeypatch):
    """Someone's lab of the same name (its run directory holds state) is neither qualified nor
    taken down: the row says what to do. With every combination so, nothing is started."""
    runs = tmp_path / "runs"
    monkeypatch.setenv("XENLAB_RUN_DIR", str(runs))
    plan = load_matrix(MATRIX, available_mib=64 * 1024)
    runs.mkdir(mode=0o700)  # a run base as xenlab makes it (it refuses one open to others)
    for combination in plan.combinations:
        (runs / combination.name).mkdir(mode=0o700)
        (runs / combination.name / "state.json").write_text("{}")
    report = run_matrix(str(PROFILE), plan, str(MATRIX), tmp_path / "out")
    assert [r.verdict for r in report.rows] == ["not_run"] * 6
    assert all("is up already" in r.reason for r in report.rows)
    assert all((runs / c.name / "state.json").exists() for c in plan.combinations)  # untouched
    assert (tmp_path / "out" / "matrix.html").exists()


def test_matrix_with_lab_or_a_bad_matrix_file_is_refused_before_anything_starts(tmp_path):
    runner = CliRunner()
    both = runner.invoke(main, ["qualify", str(PROFILE), "--matrix", str(MATRIX), "--lab", "xen-pool2"])
    assert both.exit_code == 2 and "--matrix and --lab" in both.output
    bad = tmp_path / "m.yaml"
    bad.write_text(f"name: m\nlab: {REPO / 'labs/xen-pool2.yaml'}\naxes:\n  nic: [virtio, token-ring]\n")
    refused = runner.invoke(main, ["qualify", str(PROFILE), "--matrix", str(bad), "--out", str(tmp_path / "o")])
    assert refused.exit_code == 2 and f"{bad}:4" in refused.output and "token-ring" in refused.output
    assert not (tmp_path / "o").exists() and os.listdir(tmp_path) == ["m.yaml"]
