"""What a session leaves in --xenlab-report DIR: junit.xml, results JSON, HTML, artifacts."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import xenlab.drivers
from xenlab.results import RunResults

METRIC_TESTS = '''
import pytest

def test_migrations(lab, metrics):
    for downtime in (1.0, 2.0, 4.0):
        metrics.record("downtime", downtime, "s")
    metrics.record("heartbeats_lost", 12, "count")

def test_fails_on_the_lab(lab):
    assert False, "the pool did not form"

def test_metrics_without_a_lab(metrics):
    metrics.record("parse_seconds", 0.5, "s")

def test_plain():
    pass
'''


def test_report_dir_gets_junit_results_html_and_artifacts(project):
    project.pytester.makepyfile(test_in_report=METRIC_TESTS)
    result = project.run("--xenlab-report", "out")
    result.assert_outcomes(passed=3, failed=1)
    out = project.pytester.path / "out"

    junit = ET.parse(out / "junit.xml").getroot()
    props = {p.get("name"): p.get("value") for p in junit.iter("property")}
    assert props["downtime"] == "4.0" and props["downtime.unit"] == "s" and props["heartbeats_lost"] == "12.0"

    results = RunResults.read(out / "results.json")
    assert results.lab == "xen-pool2" and results.accel == "tcg"
    assert results.bringup["h1"] == {"boot": 1.0, "ssh": 2.5, "toolstack": 3.0}
    scenarios = {s.name: s for s in results.scenarios}
    assert "test_in_report.py::test_plain" not in scenarios  # neither a lab nor metrics: not a result
    migrations = scenarios["test_in_report.py::test_migrations[xen-pool2]"]
    assert migrations.outcome == "passed"
    assert migrations.summary["downtime"].value == 2.0 and migrations.summary["downtime_p50"].value == 2.0
    assert migrations.summary["downtime_max"].value == 4.0 and migrations.series["downtime"] == [1.0, 2.0, 4.0]
    assert [s.name for s in migrations.steps] == ["setup", "call", "teardown"]
    failed = scenarios["test_in_report.py::test_fails_on_the_lab[xen-pool2]"]
    assert failed.outcome == "failed" and "the pool did not form" in failed.steps[1].message
    assert scenarios["test_in_report.py::test_metrics_without_a_lab"].summary["parse_seconds"].value == 0.5
    # the inventory was asked of every Xen host, over the lab's own command runner
    assert [i.name for i in results.inventory] == ["h1", "h2"]
    assert any(e["event"] == "run" and e["command"] == "xl info" for e in project.log())

    assert "xenlab run: lab xen-pool2" in (out / "report.html").read_text()

    artifacts = out / "artifacts" / "test_in_report.py_test_fails_on_the_lab_xen-pool2"
    assert (artifacts / "h1" / "serial-tail.log").read_text().startswith("Xen version 4.17 on h1")
    assert "output of xl dmesg on h1" in (artifacts / "h1" / "xl-dmesg.txt").read_text()
    assert "output of journalctl -b --no-pager -n 300 on h1" in (artifacts / "h1" / "journal.txt").read_text()
    assert "unreachable" in (artifacts / "h2" / "xl-dmesg.txt").read_text()
    assert not (artifacts / "services" / "xl-dmesg.txt").exists()
    assert (artifacts / "services" / "journal.txt").exists()
    assert '"STOP"' in (artifacts / "h1" / "qmp-events.jsonl").read_text()
    assert not (out / "artifacts" / "test_in_report.py_test_migrations_xen-pool2").exists()
    result.stdout.fnmatch_lines(["*xenlab artifacts*", f"*artifacts in {artifacts}*"])


def test_an_explicit_junitxml_is_respected(project):
    project.pytester.makepyfile(test_in_plain="def test_plain():\n    pass\n")
    project.run("--xenlab-report", "out", "--junitxml", "elsewhere.xml").assert_outcomes(passed=1)
    assert (project.pytester.path / "elsewhere.xml").exists()
    assert not (project.pytester.path / "out" / "junit.xml").exists()


def test_without_report_dir_nothing_is_written(project):
    project.pytester.makepyfile(test_in_report=METRIC_TESTS)
    project.run().assert_outcomes(passed=3, failed=1)
    assert not list(project.pytester.path.glob("**/results*.json"))
    assert not any(e["event"] == "run" for e in project.log())  # no inventory, no SSH artifacts


def test_each_lab_gets_its_own_results_file(project):
    project.pytester.makepyfile(test_in_two_labs='''
import pytest

def test_a(lab, metrics):
    metrics.record("x", 1, "s")

@pytest.mark.lab("xen-pool3")
def test_b(lab, metrics):
    metrics.record("x", 2, "s")
''')
    project.run("--xenlab-report", "out").assert_outcomes(passed=2)
    out = project.pytester.path / "out"
    assert RunResults.read(out / "results-xen-pool2.json").scenarios[0].summary["x"].value == 1
    assert RunResults.read(out / "results-xen-pool3.json").scenarios[0].summary["x"].value == 2
    assert (out / "report-xen-pool3.html").exists()


def test_metric_with_a_changing_unit_is_an_error(project):
    project.pytester.makepyfile(test_in_units='''
def test_units(metrics):
    metrics.record("downtime", 1, "s")
    metrics.record("downtime", 900, "ms")
''')
    result = project.run()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*metric 'downtime' was recorded in 's', now in 'ms'*"])


def test_vm_factory_destroys_every_guest_after_the_test(project, monkeypatch):
    from fakelab_outer import FakeToolstack

    monkeypatch.setattr(xenlab.drivers, "drivers_for", lambda lab: xenlab.drivers.Drivers(FakeToolstack(lab), None, None))
    project.pytester.makepyfile(test_in_guests='''
def test_guests(vm_factory):
    first = vm_factory.create()
    second = vm_factory.create(name="big", host="h2", memory_mib=256)
    assert (first.host, second.host) == ("h1", "h2")
    assert False, "fails, yet the guests go"
''')
    project.run().assert_outcomes(failed=1)
    guests = [(e["event"], e.get("guest") or e["members"]) for e in project.log()
              if e["event"] in ("form_pool", "create_vm", "destroy_vm")]
    assert guests == [("form_pool", ["h1", "h2"]), ("create_vm", "test-guests-1"), ("create_vm", "big"),
                      ("destroy_vm", "big"), ("destroy_vm", "test-guests-1")]


def test_fault_heals_every_fault_after_the_test(project, monkeypatch):
    from fakelab_outer import FakeFault

    class FakeInjector:
        def inject(self, kind, target, **params):
            return FakeFault(kind, target)

    monkeypatch.setattr(xenlab.drivers, "drivers_for", lambda lab: xenlab.drivers.Drivers(None, None, FakeInjector()))
    project.pytester.makepyfile(test_in_faults='''
def test_faults(fault):
    fault("power_cut", "h2")
    fault.inject("link_down", "h1", network="lab")
''')
    project.run().assert_outcomes(passed=1)
    heals = [(e["kind"], e["target"]) for e in project.log() if e["event"] == "heal"]
    assert heals == [("link_down", "h1"), ("power_cut", "h2")]


def test_results_json_is_valid_for_the_report_command(project):
    project.pytester.makepyfile(test_in_report=METRIC_TESTS)
    project.run("--xenlab-report", "out")
    data = json.loads((project.pytester.path / "out" / "results.json").read_text())
    assert data["schema"] == "xenlab.results/2"
