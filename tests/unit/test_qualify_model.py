"""The qualification suite's profile section, verdicts, resume state and report files."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from xenlab.errors import SpecError, XenlabError
from xenlab.qualify.model import CheckOutcome, Measured, QualifyReport, judge, not_run, outcome_of
from xenlab.qualify.report import render_html, render_junit, write_report
from xenlab.qualify.state import QualifyState, load_state, profile_digest, save_state
from xenlab.report.qualification import load_profile, parse_profile
from xenlab.results import HostInventory

REPO = Path(__file__).resolve().parents[2]


# -- profile ---------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["default", "quick"])
def test_shipped_profiles_load_with_a_suite(name):
    profile = load_profile(REPO / f"qualification/{name}.yaml")
    assert profile.suite is not None
    assert profile.suite.migration is not None and (REPO / profile.suite.migration.scenario).exists()
    assert all(a.why for a in profile.suite.stability.allow)


def test_old_profile_without_suite_still_loads():
    profile = parse_profile("name: old\nhosts: {min_cpus: 1}\nmetrics: {downtime_p50: '< 5s'}\n")
    assert profile.suite is None


def test_suite_threshold_on_unknown_figure_names_its_line():
    text = "name: p\nsuite:\n  network:\n    thresholds:\n      bandwidth: '> 1 Mbit/s'\n"
    with pytest.raises(SpecError) as err:
        parse_profile(text, "p.yaml")
    assert "p.yaml:5" in str(err.value) and "throughput" in str(err.value)


def test_suite_threshold_in_the_wrong_unit_family_is_refused():
    text = "name: p\nsuite:\n  storage:\n    thresholds:\n      rand_read_latency: '< 5 MiB/s'\n"
    with pytest.raises(SpecError) as err:
        parse_profile(text, "p.yaml")
    assert "p.yaml:5" in str(err.value) and "measured in ms" in str(err.value)


def test_suite_unknown_key_and_bad_storage_target_are_refused():
    with pytest.raises(SpecError) as err:
        parse_profile("name: p\nsuite:\n  storage:\n    targets: [tape]\n  netwrk: {}\n", "p.yaml")
    text = str(err.value)
    assert "p.yaml:4" in text and "p.yaml:5" in text


def test_guest_throughput_threshold_and_its_stream_length():
    profile = parse_profile("name: p\nsuite:\n  network:\n    guest_seconds: 4\n"
                            "    thresholds: {guest_throughput: '> 20 Mbit/s'}\n")
    assert profile.suite.network.guest_seconds == 4 and profile.suite.network.guest_to_guest
    with pytest.raises(SpecError) as err:
        parse_profile("name: p\nsuite:\n  network:\n    guest_seconds: 0\n", "p.yaml")
    assert "p.yaml:4" in str(err.value)
    with pytest.raises(SpecError, match="measured in Mbit/s"):
        parse_profile("name: p\nsuite:\n  network:\n    thresholds: {guest_throughput: '< 5s'}\n", "p.yaml")


def test_iops_threshold_is_a_unit_of_its_own():
    profile = parse_profile("name: p\nsuite:\n  storage:\n    thresholds: {rand_read_iops: '>= 50 IOPS'}\n")
    assert profile.suite.storage.thresholds["rand_read_iops"] == ">= 50 IOPS"


# -- verdicts --------------------------------------------------------------------------
def test_judge_converts_units_and_fails_an_unmeasured_judged_figure():
    assert judge("throughput", 2000, "Mbit/s", {"throughput": "> 1 Gbit/s"}).passed is True
    assert judge("throughput", 900, "Mbit/s", {"throughput": "> 1 Gbit/s"}).passed is False
    assert judge("throughput", None, "Mbit/s", {"throughput": "> 1 Gbit/s"}).passed is False
    recorded = judge("retransmits", 3, "count", {})
    assert recorded.passed is None and recorded.threshold == ""


def test_outcome_fails_on_a_missed_threshold_and_says_which():
    figures = [judge("to_ssh", 310.0, "s", {"to_ssh": "< 300s"}), judge("to_xen", 2.0, "s", {"to_xen": "< 60s"})]
    outcome = outcome_of("boot/h1", "boot", "h1", figures, started=0.0)
    assert outcome.verdict == "failed" and outcome.reason == "to_ssh 310 s is not < 300s"
    assert outcome_of("boot/h1", "boot", "h1", figures[1:], started=0.0).verdict == "passed"
    assert outcome_of("x", "network", "h1", [], started=0.0, reason="iperf3: refused").verdict == "failed"


def _report(checks: list[CheckOutcome]) -> QualifyReport:
    return QualifyReport(profile="quick", profile_file="qualification/quick.yaml", lab="xen-pool2", backend="qemu",
                         accel="tcg", started_at=1_764_000_000.0, ended_at=1_764_000_300.0,
                         inventory=[HostInventory(name="h1", cpu_model="QEMU Virtual CPU version 2.5+",
                                                  nic_details=["eth0: driver virtio_net 1.0.0, firmware none"])],
                         checks=checks, phase_seconds={"network": 20.5})


def test_not_run_checks_do_not_make_a_pass_and_a_failure_fails():
    skipped = not_run("failover", "failover", "pool", "the profile has no suite.failover")
    assert not _report([skipped]).passed  # nothing measured is not a pass
    good = outcome_of("boot/h1", "boot", "h1", [judge("to_xen", 2.0, "s", {"to_xen": "< 60s"})], 0.0)
    assert _report([good, skipped]).passed
    bad = outcome_of("net", "network", "h1", [judge("loss", 50, "%", {"loss": "<= 20%"})], 0.0)
    report = _report([good, bad, skipped])
    assert not report.passed and report.verdict.startswith("FAIL: 1 passed, 1 failed, 1 not run: net")


# -- resume state ----------------------------------------------------------------------
def test_state_round_trips_and_refuses_another_profile_or_lab(tmp_path):
    profile = tmp_path / "p.yaml"
    profile.write_text("name: p\n")
    digest = profile_digest(profile)
    state = QualifyState(profile_digest=digest, lab="xen-pool2", started_at=1.0)
    state.record(not_run("boot/h1", "boot", "h1", "why"))
    state.record(outcome_of("boot/h1", "boot", "h1", [], 0.0))  # a re-run replaces, never duplicates
    save_state(state, tmp_path / "out")
    again = load_state(tmp_path / "out", digest, "xen-pool2")
    assert again is not None and again.done() == {"boot/h1"} and again.checks[0].verdict == "passed"
    assert load_state(tmp_path / "empty", digest, "xen-pool2") is None
    with pytest.raises(XenlabError, match="another profile"):
        load_state(tmp_path / "out", "0" * 16, "xen-pool2")
    with pytest.raises(XenlabError, match="lab xen-pool2, not other"):
        load_state(tmp_path / "out", digest, "other")
    (tmp_path / "out" / "qualify-state.json").write_text("{}")
    with pytest.raises(SpecError, match="not a qualify state file"):
        load_state(tmp_path / "out", digest, "xen-pool2")


# -- report files ----------------------------------------------------------------------
def sample_checks() -> list[CheckOutcome]:
    network = outcome_of("network/h1-h2/lab", "network", "h1 -> h2 on lab",
                         [judge("throughput", 310.5, "Mbit/s", {"throughput": "> 100 Mbit/s"}, "TCP throughput"),
                          judge("loss", 0.0, "%", {})], 0.0)
    storage = outcome_of("storage/h1/shared", "storage", "h1 shared",
                         [judge("seq_read", 40.0, "MiB/s", {"seq_read": "> 50 MiB/s"}),
                          judge("seq_write", 20.0, "MiB/s", {})], 0.0)
    migration = outcome_of("migration", "migration", "pool", [judge("downtime_max", 8.0, "s", {"downtime_max": "< 35s"})],
                           0.0, details={"series": {"downtime": [6.5, 7.0, 8.0]}})
    skipped = not_run("failover", "failover", "pool", "the profile has no suite.failover <script>")
    return [network, storage, migration, skipped]


def test_junit_has_one_testcase_per_check_and_not_run_is_skipped():
    root = ET.fromstring(render_junit(_report(sample_checks())))
    cases = root.findall("testcase")
    assert [c.get("name") for c in cases] == ["network/h1-h2/lab", "storage/h1/shared", "migration", "failover"]
    assert root.get("failures") == "1" and root.get("skipped") == "1"
    assert cases[1].find("failure") is not None and cases[3].find("skipped") is not None
    assert "throughput = 310 Mbit/s (threshold > 100 Mbit/s)" in cases[0].find("system-out").text


def test_json_is_schema_versioned_and_reads_back(tmp_path):
    files = write_report(_report(sample_checks()), tmp_path)
    data = json.loads(files.json.read_text())
    assert data["schema"] == "xenlab.qualify/1"
    again = QualifyReport.model_validate(data)
    assert [c.verdict for c in again.checks] == ["passed", "failed", "passed", "not_run"]


def test_html_puts_the_verdicts_first_escapes_text_and_has_the_plots():
    html = render_html(_report(sample_checks()))
    assert html.index("Verdicts") < html.index("Figures against thresholds") < html.index("Plots")
    assert "&lt;script&gt;" in html and "<script>" not in html
    assert html.count('<img class="plot"') == 3  # throughput, storage, migration downtimes
    assert "http://" not in html and "https://" not in html
    assert "eth0: driver virtio_net" in html


def test_measured_text_uses_units():
    assert Measured(name="x", value=2.5, unit="s").text == "2.5 s"


def test_the_run_as_results_goes_into_the_history(tmp_path):
    from xenlab.report.history import History, figures_of
    from xenlab.results import load_results

    files = write_report(_report(sample_checks()), tmp_path / "out")
    results = load_results(files.results)  # a valid xenlab.results/1 file
    assert [s.outcome for s in results.scenarios] == ["passed", "failed", "passed", "skipped"]
    rows = figures_of(results)
    assert ("qualify/network/h1-h2/lab", "throughput", "Mbit/s", 310.5) in rows
    with History(tmp_path / "h.sqlite") as db:
        _, added = db.add(results, source=str(files.results))
    assert added


def test_an_unknown_accelerator_is_refused_with_its_line():
    """`hosts: {accel: [warp]}` was taken, and the run reported `FAIL: h1 accel` instead."""
    with pytest.raises(SpecError) as err:
        parse_profile("name: p\nhosts:\n  min_cpus: 1\n  accel: [kvm, warp]\n", "p.yaml")
    assert "p.yaml:4" in str(err.value) and "warp" in str(err.value) and "kvm" in str(err.value)


def test_every_accelerator_a_lab_reports_may_be_asked_for():
    from xenlab.lab import sim, static

    accels = ["kvm", "tcg", static.ACCEL, sim.ACCEL]
    assert parse_profile(f"name: p\nhosts: {{accel: [{', '.join(accels)}]}}\n").hosts.accel == accels
