"""Qualification profiles: validated with file and line; every check passes or fails."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_report_samples import inventory, synthetic_run

from xenlab.errors import SpecError
from xenlab.report.qualification import load_profile, parse_profile, qualify
from xenlab.report.units import Threshold, VersionRequirement

REPO = Path(__file__).resolve().parents[2]


def failed(report) -> set[tuple[str, str]]:
    return {(c.subject, c.check) for c in report.failures}


@pytest.mark.parametrize("path", sorted(p for p in (REPO / "qualification").glob("*.yaml")
                                         if not p.name.startswith("matrix-")),  # hardware matrices: test_matrix.py
                         ids=lambda p: p.name)
def test_shipped_profiles_are_valid(path):
    assert load_profile(path).name == path.stem


def test_a_good_run_passes_the_default_profile():
    report = qualify(synthetic_run(), load_profile(REPO / "qualification/default.yaml"))
    assert report.passed, report.failures
    assert report.verdict.startswith("PASS: ") and "lab xen-pool2, 2 host(s)" in report.verdict


def test_host_checks_fail_with_what_was_measured():
    run = synthetic_run()
    run.inventory = [inventory("h1", memory_mib=1024), inventory("h2", flags=("fpu", "sse2"), xen="4.16.2")]
    profile = parse_profile("name: p\nhosts:\n  min_memory_mib: 2000\n  required_cpu_flags: [lm]\n"
                            "  xen_version: '>= 4.17'\n  bare_metal_only: true\nscenarios_passed: false\n")
    report = qualify(run, profile)
    assert failed(report) == {("h1", "min_memory_mib"), ("h2", "required_cpu_flags"), ("h2", "xen_version"),
                              ("h1", "bare_metal_only"), ("h2", "bare_metal_only")}
    memory = next(c for c in report.checks if c.check == "min_memory_mib" and c.subject == "h1")
    assert (memory.expected, memory.measured) == (">= 2000 MiB", "1024 MiB")
    flags = next(c for c in report.checks if c.check == "required_cpu_flags" and c.subject == "h2")
    assert flags.measured == "missing: lm"
    assert report.verdict.startswith("FAIL: 5 of ")


def test_metric_thresholds_convert_units_and_refuse_mismatches():
    run = synthetic_run(downtimes=[2.0, 2.5, 3.0])  # downtime_p50 2.5 s
    report = qualify(run, parse_profile("name: p\nmetrics:\n  downtime_p50: '< 2600ms'\n  downtime_max: '< 3s'\n"
                                        "  migrations: '>= 3'\n  recovery_p50: '< 1 MiB'\nscenarios_passed: false\n"))
    assert failed(report) == {("live-migration", "downtime_max"), ("host-failover", "recovery_p50")}
    mismatch = next(c for c in report.checks if c.check == "recovery_p50")
    assert "cannot compare s with MiB" in mismatch.message


def test_bringup_stages_and_missing_figures():
    report = qualify(synthetic_run(), parse_profile(
        "name: p\nmetrics:\n  bringup_toolstack: '< 52s'\n  throughput: '> 100 MiB/s'\nscenarios_passed: false\n"))
    assert failed(report) == {("h2", "bringup_toolstack"), ("run", "throughput")}
    assert next(c for c in report.checks if c.check == "throughput").measured == "not measured"


def test_a_run_without_inventory_or_with_failed_scenarios_fails():
    run = synthetic_run()
    run.inventory = []
    run.scenarios[0].outcome = "failed"
    report = qualify(run, parse_profile("name: p\nhosts:\n  min_cpus: 1\n"))
    assert failed(report) == {("run", "inventory"), ("run", "scenarios_passed")}


@pytest.mark.parametrize("text,line,fragment", [
    ("name: p\nhosts:\n  min_memroy_mib: 3\n", 3, "unknown key 'min_memroy_mib' in hosts"),
    ("name: p\nmetrics:\n  downtime_p50: 'about 5s'\n", 3, "is not a threshold like '< 5s'"),
    ("name: p\nhosts:\n  xen_version: 'new enough'\n", 3, "is not a version requirement"),
    ("description: no name\n", 1, "missing required key 'name'"),
])
def test_profile_errors_name_file_and_line(text, line, fragment):
    with pytest.raises(SpecError) as info:
        parse_profile(text, "q.yaml")
    [(found_line, message)] = info.value.problems
    assert found_line == line and fragment in message
    assert str(info.value).startswith(f"q.yaml:{line}: ")


def test_thresholds_and_versions():
    assert Threshold.parse("< 5s").check(4.9, "s") and not Threshold.parse("< 5s").check(5000, "ms")
    assert Threshold.parse(">= 100 MiB/s").check(200, "MiB/s")
    assert Threshold.parse("<= 3").check(3, "count")
    assert VersionRequirement.parse(">= 4.17").check("4.17.5-pre")
    assert not VersionRequirement.parse(">= 4.17").check("4.16.9")
    assert VersionRequirement.parse("== 6.1").check("6.1.0-27-amd64")
    with pytest.raises(ValueError):
        Threshold.parse("< 5 parsecs")
