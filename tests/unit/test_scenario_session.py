"""`xenlab run` up to the point where a lab would start: everything invalid is refused first."""

from pathlib import Path

import pytest
from click.testing import CliRunner

from xenlab.cli import main
from xenlab.errors import SpecError, XenlabError
from xenlab.lab import Lab, SimLab
from xenlab.scenario.session import default_results_path, plan_run

REPO = Path(__file__).resolve().parents[2]
SCENARIO = REPO / "scenarios/live-migration.yaml"
LAB = REPO / "labs/xen-pool2.yaml"
SIM_LAB = REPO / "labs/xapi-sim-pool3.yaml"


@pytest.fixture(autouse=True)
def no_labs_up(tmp_path, monkeypatch):
    """An empty run directory: no lab of this machine is seen, none is started."""
    monkeypatch.setenv("XENLAB_RUN_DIR", str(tmp_path / "runs"))


def test_a_valid_scenario_plans_its_own_lab_without_starting_it():
    plan = plan_run(str(SCENARIO), str(LAB))
    assert (plan.scenario.name, plan.lab_name, plan.running, plan.started_here) == ("live-migration", "xen-pool2",
                                                                                    False, False)
    assert isinstance(plan.lab, Lab) and plan.lab.spec_path == str(LAB)
    assert not plan.lab.run.exists()  # nothing was started


def test_the_lab_file_says_which_backend_serves_it():
    plan = plan_run(str(SCENARIO), str(SIM_LAB))
    assert isinstance(plan.lab, SimLab) and plan.lab.server is None
    assert plan.lab.capabilities.toolstack == "xapi" and not plan.lab.capabilities.checkpoints


def test_a_scenario_that_does_not_fit_the_lab_is_refused_with_lines(tmp_path):
    lab = tmp_path / "solo.yaml"
    lab.write_text("name: solo\nhosts:\n  h1:\n")
    with pytest.raises(SpecError) as info:
        plan_run(str(SCENARIO), str(lab))
    assert info.value.path == str(SCENARIO)
    lines = SCENARIO.read_text().splitlines()
    form_pool = 1 + next(i for i, line in enumerate(lines) if "form_pool: {members: [h1, h2]}" in line)
    on_h2 = 1 + next(i for i, line in enumerate(lines) if "vm_on: {vm: vm1, host: h2}" in line)
    assert info.value.problems == [(form_pool, "lab solo has no host 'h2' (hosts: h1)"),
                                   (on_h2, "lab solo has no host 'h2' (hosts: h1)")]


def test_a_scenario_asking_what_the_lab_cannot_do_is_refused_from_its_capabilities(tmp_path):
    scenario = tmp_path / "frozen.yaml"
    scenario.write_text("name: frozen\nsteps:\n  - fault: {kind: freeze, target: h1}\n"
                        "  - checkpoint: {save: mid}\n")
    with pytest.raises(SpecError) as info:
        plan_run(str(scenario), str(SIM_LAB))
    assert info.value.problems == [
        (3, "fault freeze is not offered by sim lab xapi-sim-pool3 (it offers power_cut, partition)"),
        (4, "checkpoints are not supported on sim lab xapi-sim-pool3")]
    assert plan_run(str(scenario), str(LAB)).lab.capabilities.checkpoints  # a QEMU lab offers both


def test_a_scenario_without_a_lab_needs_one_named(tmp_path):
    scenario = tmp_path / "bare.yaml"
    scenario.write_text("name: bare\nsteps:\n  - wait: {seconds: 1}\n")
    with pytest.raises(XenlabError, match="names no lab"):
        plan_run(str(scenario), None)


def test_results_are_named_after_the_scenario_and_time():
    plan = plan_run(str(SCENARIO), str(LAB))
    path = default_results_path(plan.scenario, now=0.0, base=Path("out"))
    assert path.parent == Path("out") and path.name.startswith("live-migration-") and path.suffix == ".json"


def test_the_cli_exits_2_for_an_invalid_scenario(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\nsteps:\n  - create_vm: {name: vm1, host: h1}\n  - migrate: {vm: vm1, to: h2}\n"
                   "    expect: {downtime: soon}\n")
    result = CliRunner().invoke(main, ["run", str(bad), "--lab", str(LAB)])
    assert result.exit_code == 2
    assert f"{bad}:5:" in result.output and "cannot read expectation 'soon'" in result.output


def test_the_cli_exits_2_when_the_scenario_does_not_fit_the_lab(tmp_path):
    lab = tmp_path / "solo.yaml"
    lab.write_text("name: solo\nhosts:\n  h1:\n")
    result = CliRunner().invoke(main, ["run", str(SCENARIO), "--lab", str(lab)])
    assert result.exit_code == 2 and "no host 'h2'" in result.output
