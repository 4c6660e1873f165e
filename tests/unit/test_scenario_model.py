"""Scenario files: shipped ones are valid for the default lab; bad ones name file, line and problem."""

from pathlib import Path

import pytest

from xenlab.errors import SpecError
from xenlab.scenario import check_against_lab, load_scenario, parse_scenario
from xenlab.spec import load_lab, parse_lab

REPO = Path(__file__).resolve().parents[2]
DEFAULT_LAB = load_lab(REPO / "labs/xen-pool2.yaml")
HEAD = "name: t\nsteps:\n"
POOLED = HEAD + "  - form_pool: {members: [h1, h2]}\n"  # guests need a pool


def problems(text: str) -> list[tuple[int | None, str]]:
    with pytest.raises(SpecError) as info:
        parse_scenario(text, "s.yaml")
    assert info.value.path == "s.yaml"
    return info.value.problems


def only(text: str) -> tuple[int | None, str]:
    [problem] = problems(text)
    return problem


SHIPPED = sorted((REPO / "scenarios").glob("*.yaml"))


def test_the_shipped_scenarios_are_there():
    assert {p.stem for p in SHIPPED} >= {"pool-formation", "live-migration", "host-failover", "network-partition",
                                         "rolling-evacuate", "migration-power-cut", "storage-loss",
                                         "migration-partition"}


GUEST_TYPE_SCENARIOS = {"guest-types", "live-migration-pvh"}  # PVH/HVM guests: the lab that runs them


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_shipped_scenarios_are_valid_for_their_lab(path):
    scenario = load_scenario(path)
    assert scenario.name == path.stem
    if path.stem in GUEST_TYPE_SCENARIOS:
        assert scenario.lab == "xen-pool2-guests"
        assert check_against_lab(scenario, load_lab(REPO / "labs/xen-pool2-guests.yaml")) == []
    elif path.stem == "rolling-upgrade":  # a Debian 12 host and a Debian 13 host
        assert scenario.lab == "xen-mixed"
        assert check_against_lab(scenario, load_lab(REPO / "labs/xen-mixed.yaml")) == []
    else:
        assert scenario.lab == "xen-pool2"
        assert check_against_lab(scenario, DEFAULT_LAB) == []
    assert scenario.path == str(path)


def test_live_migration_ping_pongs_five_times_with_downtime_statistics():
    scenario = load_scenario(REPO / "scenarios/live-migration.yaml")
    [repeat] = [s for s in scenario.steps if s.kind == "repeat"]
    assert repeat.repeat.times == 5
    assert [s.kind for s in repeat.repeat.steps] == ["migrate"]
    assert {"downtime_p50", "downtime_max"} <= set(repeat.expect)


def test_a_full_scenario_reads_into_typed_steps():
    scenario = parse_scenario(
        "name: demo\nlab: xen-pool2\npool:\n  detection_timeout_s: 20\n  protected: [vm2]\nsteps:\n"
        "  - form_pool: {members: [h1, h2, h3], expect_refused: {h3: CPU}}\n"
        "  - create_vm: {name: vm1, host: h1, memory_mib: 256, protected: true}\n"
        "  - create_vm: {name: vm2, host: h1}\n"
        "  - migrate: {vm: vm1, to: other}\n"
        "    expect: {downtime: '< 2s', heartbeats_lost: 0, integrity: true}\n"
        "  - fault: {kind: impair, target: [h1, h2], loss_pct: 5, delay_ms: 20}\n"
        "  - fault: {name: cut, kind: power_cut, target: h1}\n"
        "  - wait: {for: {host_dead: h1}, timeout: 30}\n"
        "  - heal: cut\n  - heal: all\n"
        "  - assert: [{vm_on: {vm: vm1, host: h2}}, {data_intact: vm1}]\n"
        "  - checkpoint: {save: ready}\n",
    )
    kinds = [s.kind for s in scenario.steps]
    assert kinds == ["form_pool", "create_vm", "create_vm", "migrate", "fault", "fault", "wait", "heal", "heal",
                     "assert", "checkpoint"]
    assert scenario.protected_guests() == ("vm2", "vm1")
    migrate = scenario.steps[3]
    assert migrate.title == "migrate vm1 -> other"
    assert migrate.expect["heartbeats_lost"].op == "=="
    assert migrate.expect["integrity"].op == "ok"
    impair = scenario.steps[4].fault
    assert impair.params() == {"loss_pct": 5.0, "delay_ms": 20.0} and impair.targets == ["h1", "h2"]
    assert scenario.steps[6].wait.for_.host_dead == "h1"


# -- structure --------------------------------------------------------------------------
def test_an_unknown_key_in_a_step_names_its_line():
    found = problems(HEAD + "  - create_vm: {name: vm1, host: h1}\n  - migrate:\n      vm: vm1\n      too: h2\n")
    assert (6, "unknown key 'too' in steps.1.migrate") in found
    assert (4, "missing required key 'steps.1.migrate.to'") in found


def test_a_step_needs_exactly_one_kind():
    line, message = only(HEAD + "  - name: nothing\n")
    assert line == 3 and "exactly one of" in message
    line, message = only(HEAD + "  - create_vm: {name: a, host: h1}\n    heal: all\n")
    assert line == 3 and "found create_vm, heal" in message


def test_an_unknown_step_kind():
    line, message = only(HEAD + "  - migrate_all: {}\n")
    assert line == 3 and "unknown key 'migrate_all'" in message


def test_a_wait_has_a_condition_or_seconds():
    line, message = only(HEAD + "  - wait: {timeout: 5}\n")
    assert line == 3 and "either `for: CONDITION`" in message


def test_a_condition_has_one_key():
    line, message = only(HEAD + "  - assert:\n      - host_dead: h1\n        host_alive: h2\n")
    assert line == 4 and "exactly one of" in message


def test_fault_parameters_fit_the_kind():
    assert "needs at least one of" in only(HEAD + "  - fault: {kind: impair, target: h1}\n")[1]
    assert "only applies to impair" in only(HEAD + "  - fault: {kind: power_cut, target: h1, loss_pct: 3}\n")[1]
    line, message = only(HEAD + "  - fault:\n      kind: melt\n      target: h1\n")
    assert line == 4 and "power_cut" in message


def test_expect_refused_must_name_members():
    line, message = only(HEAD + "  - form_pool: {members: [h1], expect_refused: {h2: memory}}\n")
    assert line == 3 and "h2" in message


# -- expectations -----------------------------------------------------------------------
STEPS = POOLED + "  - create_vm: {name: vm1, host: h1}\n  - migrate: {vm: vm1, to: h2}\n    expect:\n"


def test_an_unreadable_expectation_names_its_line():
    line, message = only(STEPS + "      duration: '< 30s'\n      downtime: '<< 2s'\n")
    assert line == 8 and "cannot read expectation '<< 2s'" in message


def test_a_figure_the_step_does_not_measure():
    line, message = only(STEPS + "      downtme: '< 2s'\n")
    assert line == 7 and "does not measure 'downtme'" in message and "downtime" in message


def test_a_limit_without_the_figures_unit():
    line, message = only(STEPS + "      downtime: '< 2'\n")
    assert line == 7 and "measured in seconds" in message


def test_a_repeat_step_has_its_own_figures():
    text = (POOLED + "  - create_vm: {name: vm1, host: h1}\n  - repeat:\n      times: 2\n      steps:\n"
            "        - migrate: {vm: vm1, to: h2}\n    expect:\n      downtime_p50: '< 5s'\n"
            "      recovery: '< 5s'\n")
    line, message = only(text)
    assert line == 11 and "a repeat step does not measure 'recovery'" in message


# -- references between steps ------------------------------------------------------------
def test_a_guest_used_before_it_is_created():
    line, message = only(POOLED + "  - migrate: {vm: vm1, to: h2}\n  - create_vm: {name: vm1, host: h1}\n")
    assert line == 4 and "'vm1' is used before a create_vm step" in message


def test_a_guest_in_a_condition_must_exist():
    line, message = only(HEAD + "  - wait: {for: {vm_running: ghost}}\n")
    assert line == 3 and "ghost" in message


def test_a_guest_created_twice():
    line, message = only(POOLED + "  - create_vm: {name: vm1, host: h1}\n  - create_vm: {name: vm1, host: h2}\n")
    assert line == 5 and "already created" in message


def test_creating_inside_a_repeat_creates_again():
    line, message = only(POOLED + "  - repeat:\n      times: 3\n      steps:\n        - create_vm: {name: a, host: h1}\n")
    assert line == 7 and "next repetition" in message


def test_healing_a_fault_that_was_never_injected():
    line, message = only(HEAD + "  - fault: {name: cut, kind: power_cut, target: h1}\n  - heal: cutt\n")
    assert line == 4 and "no active fault named 'cutt'" in message and "active: cut" in message


def test_healing_twice():
    line, message = only(HEAD + "  - fault: {name: cut, kind: freeze, target: h1}\n  - heal: cut\n  - heal: cut\n")
    assert line == 5 and "active: none" in message


def test_heal_all_then_inject_again_is_fine():
    parse_scenario(HEAD + "  - repeat:\n      times: 3\n      steps:\n"
                          "        - fault: {name: f, kind: freeze, target: h1}\n        - heal: all\n")


def test_a_fault_left_active_across_repetitions():
    line, message = only(HEAD + "  - repeat:\n      times: 2\n      steps:\n"
                                "        - fault: {name: f, kind: freeze, target: h1}\n")
    assert line == 6 and "already active" in message


def test_restoring_a_checkpoint_under_an_active_fault():
    line, message = only(HEAD + "  - fault: {name: f, kind: freeze, target: h1}\n  - checkpoint: {restore: ready}\n")
    assert line == 4 and "heal them first" in message


def test_a_protected_guest_that_is_never_created():
    line, message = only("name: t\npool:\n  protected: [vm1, vm9]\nsteps:\n  - form_pool: {members: [h1, h2]}\n  - create_vm: {name: vm1, host: h1}\n")
    assert line == 3 and "'vm9' is never created" in message


def test_to_other_needs_a_pool_of_two():
    line, message = only(HEAD + "  - form_pool: {members: [h1, h2, h3]}\n  - create_vm: {name: a, host: h1}\n"
                                "  - migrate: {vm: a, to: other}\n")
    assert line == 5 and "pool of two" in message


def test_every_problem_is_reported_at_once():
    found = problems(HEAD + "  - migrate: {vm: a, to: h2}\n  - heal: x\n")
    assert [line for line, _ in found] == [3, 4]


# -- against a lab ----------------------------------------------------------------------
def lab_problems(steps: str, lab=DEFAULT_LAB) -> list[tuple[int | None, str]]:
    return check_against_lab(parse_scenario(HEAD + steps, "s.yaml"), lab)


def test_hosts_must_be_hosts_of_the_lab():
    found = lab_problems("  - form_pool: {members: [h1, h3]}\n  - create_vm: {name: a, host: h4}\n"
                         "  - migrate: {vm: a, to: h5}\n  - evacuate: {host: h6}\n"
                         "  - wait: {for: {host_dead: h7}}\n  - assert: [{vm_on: {vm: a, host: h8}}]\n")
    assert [line for line, _ in found] == [3, 4, 5, 6, 7, 8]
    assert "lab xen-pool2 has no host 'h3' (hosts: h1, h2)" in found[0][1]


def test_the_services_node_may_be_a_fault_target_but_not_a_pool_member():
    assert lab_problems("  - fault: {kind: storage_loss, target: services}\n") == []
    [(line, message)] = lab_problems("  - form_pool: {members: [h1]}\n  - create_vm: {name: a, host: services}\n")
    assert line == 4 and "services node" in message


def test_a_fault_target_list_points_at_the_bad_entry():
    [(line, message)] = lab_problems("  - fault:\n      kind: partition\n      target:\n        - h1\n        - h9\n")
    assert line == 7 and "h9" in message


def test_a_fault_network_must_exist():
    [(line, message)] = lab_problems("  - fault: {kind: link_down, target: h1, network: storage}\n")
    assert line == 3 and "no network 'storage'" in message


def test_a_guest_must_fit_beside_dom0():
    [(line, message)] = lab_problems("  - form_pool: {members: [h1]}\n  - create_vm:\n      name: big\n      host: h1\n"
                                     "      memory_mib: 1536\n")
    assert line == 7 and "does not fit on h1" in message


def test_a_bigger_lab_accepts_more_hosts():
    lab = parse_lab("name: pool3\nhosts:\n  h1:\n  h2:\n  h3:\n")
    assert lab_problems("  - form_pool: {members: [h1, h2, h3]}\n", lab) == []


def test_a_fault_during_a_migration_is_checked_against_the_lab_like_a_fault_step():
    scenario = parse_scenario(HEAD + "  - form_pool: {members: [h1, h2]}\n  - create_vm: {name: vm1, host: h1}\n"
                              "  - migrate:\n      vm: vm1\n      to: h2\n      during:\n        after_s: 3\n"
                              "        fault: {kind: link_down, target: h9, network: wan}\n", "s.yaml")
    assert [f.kind for _, f in scenario.faults()] == ["link_down"]
    found = check_against_lab(scenario, DEFAULT_LAB)
    assert (10, "lab xen-pool2 has no host 'h9' (hosts: h1, h2; services node: services)") in found
    assert any(line == 10 and "no network 'wan'" in message for line, message in found)


def test_a_fault_during_a_migration_needs_a_delay_and_a_valid_fault():
    found = problems(HEAD + "  - create_vm: {name: vm1, host: h1}\n"
                     "  - migrate: {vm: vm1, to: h2, during: {fault: {kind: melt, target: h1}}}\n")
    messages = " ".join(m for _, m in found)
    assert "after_s" in messages and "'melt' is not allowed here: write 'power_cut'" in messages


def test_a_destroyed_guest_cannot_be_used_again():
    line, message = only(POOLED + "  - create_vm: {name: vm1, host: h1}\n  - destroy_vm: vm1\n"
                                  "  - migrate: {vm: vm1, to: h2}\n")
    assert line == 6 and "'vm1' is used after a destroy_vm step destroyed it" in message


def test_destroying_a_guest_never_created():
    line, message = only(POOLED + "  - destroy_vm: ghost\n")
    assert line == 4 and "'ghost' is used before a create_vm step" in message


def test_a_destroyed_guest_may_be_created_again_and_still_counts_as_created_for_the_pool():
    scenario = parse_scenario("name: t\npool: {protected: [vm1]}\nsteps:\n  - form_pool: {members: [h1, h2]}\n"
                              "  - create_vm: {name: vm1, host: h1}\n  - destroy_vm: vm1\n"
                              "  - create_vm: {name: vm1, host: h2}\n  - destroy_vm: vm1\n")
    assert [step.title for step in scenario.steps][2:] == ["destroy vm1", "create vm1 on h2", "destroy vm1"]
