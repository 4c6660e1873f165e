"""`xenlab run --dry-run`: the plan on a lab without starting or changing anything, and
`--keep-going`: a run past missed expectations that reports every miss.

The QEMU lab here is a copy of the default lab under a name no session boots, so whether
some lab is up on this machine does not change what the plan says; its accelerator is
given (`--accel`), as a lab that is not up would get it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from xenlab.cli import main
from xenlab.lab.rundir import RunDir
from xenlab.scenario.dryrun import dry_run

REPO = Path(__file__).resolve().parents[2]
SIM_LAB = str(REPO / "labs/xapi-sim-pool3.yaml")


@pytest.fixture
def qemu_lab(tmp_path, monkeypatch) -> str:
    monkeypatch.setenv("XENLAB_RUN_DIR", str(tmp_path / "runs"))
    text = (REPO / "labs/xen-pool2.yaml").read_text().replace("name: xen-pool2", "name: dry-pool")
    path = tmp_path / "dry-pool.yaml"
    path.write_text(text)
    return str(path)


def line_of(path: str, text: str) -> int:
    return next(n for n, line in enumerate((REPO / path).read_text().splitlines(), 1) if text in line)


def steps_of(plan):
    for step in plan.steps:
        yield step
        yield from step.substeps


@pytest.mark.parametrize(("accel", "downtime", "first_heartbeat"), [
    ("tcg", "downtime < 20s (the bound for tcg)", "first_heartbeat < 150s (the bound for tcg)"),
    ("kvm", "downtime < 10s (the bound for kvm)", "first_heartbeat < 120s (the bound for kvm)"),
])
def test_the_bound_of_each_expectation_is_the_one_for_the_labs_accelerator(qemu_lab, accel, downtime,
                                                                          first_heartbeat):
    plan = dry_run(str(REPO / "scenarios/live-migration.yaml"), qemu_lab, accel)
    assert (plan.lab, plan.backend, plan.running, plan.accel) == ("dry-pool", "qemu", False, accel)
    steps = {s.number: s for s in steps_of(plan)}
    assert steps["2"].bounds == [first_heartbeat]
    assert downtime in steps["3.1"].bounds
    assert steps["3.1"].acts_on == ["vm1: h1 -> h2", "vm1: h2 -> h1"]  # `to: other`, resolved round by round
    assert steps["3"].times == 5 and steps["3.1"].line == line_of("scenarios/live-migration.yaml", "- migrate: {vm: vm1")
    assert plan.refused == [] and plan.cannot == []  # a QEMU lab measures everything
    assert not RunDir.for_lab("dry-pool").exists()  # nothing was started


def test_on_a_sim_lab_the_plan_says_what_is_not_judged_and_not_measured():
    plan = dry_run(str(REPO / "scenarios/host-failover.yaml"), SIM_LAB)
    assert (plan.accel, plan.toolstack, plan.refused) == ("sim", "xapi", [])
    steps = {s.number: s for s in plan.steps}
    assert steps["4"].acts_on == ["power_cut on h1, named cut; guests there: vm1"]
    assert steps["6"].bounds == ["detection: no bound for accelerator sim (bounds for tcg, kvm): not judged",
                                 "recovery: no bound for accelerator sim (bounds for tcg, kvm): not judged"]
    assert steps["7"].bounds == ["integrity ok (not measured here: its verdict will be not_measured)"]
    assert "integrity: a sim lab cannot read guests' disk records back" in steps["7"].not_measured
    assert any(c.startswith("no shell on h1, h2, h3") for c in plan.cannot)


def test_a_dry_run_of_command_steps_shows_them_and_a_lab_without_shells_refuses_them(tmp_path, qemu_lab):
    scenario = tmp_path / "s.yaml"
    scenario.write_text("name: s\nsteps:\n  - run: {host: h1, command: 'xl info', expect: {stdout: xen_major}}\n"
                        "  - wait: {until: {unit_active: {host: services, unit: nfs-server}}, timeout: 30}\n")
    plan = dry_run(str(scenario), qemu_lab, "tcg")
    assert plan.steps[0].acts_on == ["on h1: xl info", "expects exit 0, stdout ~ /xen_major/, within 60 s"]
    assert plan.steps[1].acts_on == ["on services, until nfs-server active on services (at most 30 s)"]
    run = CliRunner().invoke(main, ["run", str(scenario), "--dry-run", "--lab", SIM_LAB])
    assert run.exit_code == 2
    assert "1. run on h1: xl info [run] (line 3)" in run.output  # the plan, then why it cannot run
    assert f"{scenario}:3: this step runs a command on h1, but sim lab xapi-sim-pool3 has no shell there" in run.output


def test_the_cli_prints_the_plan_or_its_json_and_starts_nothing(qemu_lab):
    run = CliRunner().invoke(main, ["run", str(REPO / "scenarios/host-failover.yaml"), "--dry-run", "--lab", qemu_lab,
                                    "--accel", "kvm"])
    assert run.exit_code == 0, run.output
    assert "scenario host-failover on lab dry-pool (qemu, not up): a dry run, nothing is started or changed" in run.output
    assert "expects: recovery < 120s (the bound for kvm)" in run.output
    as_json = CliRunner().invoke(main, ["run", str(REPO / "scenarios/host-failover.yaml"), "--dry-run", "--lab",
                                        qemu_lab, "--accel", "tcg", "--json"])
    data = json.loads(as_json.output)
    assert data["schema"] == "xenlab.dry-run/1" and data["accel"] == "tcg"
    first = line_of("scenarios/host-failover.yaml", "- form_pool:")
    assert [s["line"] for s in data["steps"]][:3] == [first, first + 1, first + 2]
    assert not RunDir.for_lab("dry-pool").exists()


def test_keep_going_runs_past_missed_expectations_and_lists_every_miss(tmp_path, monkeypatch):
    monkeypatch.setenv("XENLAB_RUN_DIR", str(tmp_path / "runs"))
    scenario = tmp_path / "misses.yaml"
    scenario.write_text("name: misses\nsteps:\n"
                        "  - {form_pool: {members: [h1, h2]}, expect: {members: '== 3'}}\n"
                        "  - {wait: {seconds: 0.05}, expect: {duration: '< 1ms'}}\n"
                        "  - {wait: {seconds: 0.05}}\n")
    args = ["run", str(scenario), "--lab", SIM_LAB, "--results", str(tmp_path / "r.json")]
    stopped = CliRunner().invoke(main, args)
    assert stopped.exit_code == 1
    assert [s["outcome"] for s in json.loads((tmp_path / "r.json").read_text())["scenarios"][0]["steps"]] == [
        "failed", "skipped", "skipped"]
    kept = CliRunner().invoke(main, [*args, "--keep-going"])
    assert kept.exit_code == 1
    assert [s["outcome"] for s in json.loads((tmp_path / "r.json").read_text())["scenarios"][0]["steps"]] == [
        "failed", "failed", "passed"]
    assert "missed: form pool h1, h2: members 2 is not == 3" in kept.output
    assert "missed: wait 0.05s: duration " in kept.output
