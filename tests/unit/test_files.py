"""`xenlab validate` knows every kind of xenlab file, and `xenlab schema` describes each.

The JSON Schemas are what editors check files with (through the modeline the shipped files
carry), so the scenario schema must agree with the scenario loader: the shipped scenarios
pass both, and broken ones are refused by both.
"""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml
from click.testing import CliRunner

from xenlab.cli import main
from xenlab.errors import SpecError
from xenlab.files import FILE_KINDS, json_schema, json_schema_text, kind_of, schema_file_name, validate_file
from xenlab.results import RunResults, ScenarioResult
from xenlab.scenario import parse_scenario

REPO = Path(__file__).resolve().parents[2]
SHIPPED = {"lab": sorted((REPO / "labs").glob("*.yaml")), "scenario": sorted((REPO / "scenarios").glob("*.yaml")),
           "profile": [REPO / "qualification/default.yaml", REPO / "qualification/quick.yaml"],
           "matrix": [REPO / "qualification/matrix-firmware-nic.yaml"]}


def cli(*args: str, cwd: Path = REPO):
    import os

    old = Path.cwd()
    os.chdir(cwd)
    try:
        return CliRunner().invoke(main, list(args))
    finally:
        os.chdir(old)


def test_validate_passes_every_shipped_file_with_a_line_each():
    files = [str(p.relative_to(REPO)) for paths in SHIPPED.values() for p in paths]
    run = cli("validate", *files)
    assert run.exit_code == 0, run.output
    lines = run.output.strip().splitlines()
    assert len(lines) == len(files)
    assert lines[0].startswith(f"{files[0]}: valid lab file ")
    assert any(line.startswith("scenarios/host-failover.yaml: valid scenario host-failover (10 steps), fits lab "
                               "xen-pool2") for line in lines)
    assert any("valid hardware matrix firmware-nic: firmware [direct, bios, uefi] x nic [virtio, e1000] -> 6 labs"
               in line for line in lines)


@pytest.mark.parametrize("kind", ["lab", "scenario", "profile", "matrix"])
def test_every_shipped_file_says_its_kind_in_a_modeline_on_its_first_line(kind):
    for path in SHIPPED[kind]:
        first = path.read_text().splitlines()[0]
        assert first == f"# yaml-language-server: $schema=../docs/schema/{schema_file_name(kind)}", path
        assert kind_of(path) == kind


def test_validate_stops_at_the_first_bad_file_with_its_line_and_exit_2(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: t\nlab: xen-pool2\nsteps:\n  - form_pool: {members: [h1, h2]}\n"
                   "  - migrate: {vm: vm1, to: h2}\n")
    run = cli("validate", "labs/xen-pool2.yaml", str(bad), "scenarios/live-migration.yaml")
    assert run.exit_code == 2
    assert "labs/xen-pool2.yaml: valid lab file xen-pool2" in run.output
    assert f"{bad}:5: guest 'vm1' is used before a create_vm step creates it" in run.output
    assert "live-migration" not in run.output  # nothing after the first bad file
    assert "Traceback" not in run.output


def test_a_scenario_is_checked_against_the_lab_it_names(tmp_path):
    scenario = tmp_path / "s.yaml"
    scenario.write_text("name: t\nlab: xapi-sim-pool3\nsteps:\n  - run: {host: h1, command: 'true'}\n")
    with pytest.raises(SpecError) as info:
        validate_file(str(scenario), REPO)
    assert info.value.problems == [(4, ("this step runs a command on h1, but sim lab xapi-sim-pool3 has no shell "
                                       "there (capability: shell; a sim lab's hosts are xapi endpoints)"))]
    scenario.write_text("name: t\nlab: no-such-lab\nsteps:\n  - wait: {seconds: 1}\n")
    assert "not checked against lab no-such-lab: no lab file for 'no-such-lab'" in validate_file(str(scenario),
                                                                                               REPO).summary


def test_a_results_file_is_validated_by_the_results_loader(tmp_path):
    path = tmp_path / "r.json"
    RunResults(lab="xen-pool2", accel="kvm", scenarios=[ScenarioResult(
        name="s", file="s.yaml", lab="xen-pool2", toolstack="xl", started_at=1.0, ended_at=2.0,
        outcome="passed")]).write(path)
    assert validate_file(str(path)).line == f"{path}: valid results file of lab xen-pool2: 1 scenarios (1 passed)"
    path.write_text(json.dumps({"schema": "xenlab.results/2", "lab": 3}))
    with pytest.raises(SpecError):
        validate_file(str(path))


@pytest.mark.parametrize(("text", "wanted"), [
    ("name: t\nsteps: []\naxes: {nic: [e1000]}\n",
     (2, ("cannot tell which kind of xenlab file this is: its keys belong to different kinds: steps (a scenario); "
         "axes (a hardware matrix)"))),
    ("name: t\ndescription: x\n", (1, ("cannot tell which kind of xenlab file this is: none of its keys (name, "
                                      "description) marks one"))),
    ("# yaml-language-server: $schema=https://example.org/other.json\nname: t\n",
     (1, "the modeline names schema 'https://example.org/other.json', which is none of xenlab's")),
])
def test_a_file_of_no_clear_kind_is_refused_with_what_to_write(tmp_path, text, wanted):
    path = tmp_path / "x.yaml"
    path.write_text(text)
    with pytest.raises(SpecError) as info:
        kind_of(path)
    [(line, message)] = info.value.problems
    assert (line, message[: len(wanted[1])]) == wanted
    if "none of xenlab's" not in message:
        assert "start the file with a modeline naming its kind" in message


def test_keys_and_modelines_tell_the_kind(tmp_path):
    cases = {"name: t\nhosts: {h1: }\n": "lab", "name: t\nhosts: {min_cpus: 2}\n": "profile",
             "name: t\nlab: x.yaml\naxes: {nic: [e1000]}\n": "matrix", "name: t\nsuite: {}\n": "profile",
             "# yaml-language-server: $schema=../docs/schema/scenario.schema.json\nname: t\n": "scenario"}
    for index, (text, kind) in enumerate(cases.items()):
        path = tmp_path / f"f{index}.yaml"
        path.write_text(text)
        assert kind_of(path) == kind, text


# -- schemas ------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", FILE_KINDS)
def test_schema_prints_each_kind_and_the_repository_copy_is_up_to_date(kind):
    run = cli("schema", "--kind", kind)
    assert run.exit_code == 0
    assert json.loads(run.output) == json_schema(kind)
    jsonschema.Draft202012Validator.check_schema(json_schema(kind))
    shipped = REPO / "docs/schema" / schema_file_name(kind)
    assert shipped.read_text() == json_schema_text(kind), f"regenerate: xenlab schema --out docs/schema ({kind})"


@pytest.mark.parametrize("kind", ["lab", "scenario", "profile", "matrix"])
def test_every_shipped_file_validates_against_its_schema(kind):
    validator = jsonschema.Draft202012Validator(json_schema(kind))
    for path in SHIPPED[kind]:
        errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(yaml.safe_load(path.read_text()))]
        assert errors == [], path


SCENARIO = jsonschema.Draft202012Validator(json_schema("scenario"))
HEAD = "name: t\nsteps:\n  - form_pool: {members: [h1, h2]}\n  - create_vm: {name: vm1, host: h1}\n"


def both_refuse(text: str) -> None:
    with pytest.raises(SpecError):
        parse_scenario(text, "s.yaml")
    assert list(SCENARIO.iter_errors(yaml.safe_load(text))), f"the schema accepts what the loader refuses:\n{text}"


@pytest.mark.parametrize("step", [
    "  - {migrate: {vm: vm1, to: h2}, evacuate: {host: h1}}",  # two kinds in one step
    "  - {name: nothing}",  # no kind
    "  - {migrate: {vm: vm1, to: h2}, expect: {recovery: '< 2s'}}",  # a figure migrate does not measure
    "  - {migrate: {vm: vm1, to: h2}, expect: {downtime: '< 2 parsecs'}}",  # unreadable
    "  - {migrate: {vm: vm1, to: h2}, expect: {downtime: '<= 3'}}",  # a count for a time
    "  - {migrate: {vm: vm1, to: h2}, expect: {integrity: '< 2s'}}",  # a time for a yes-or-no
    "  - {migrate: {vm: vm1, to: h2}, expect: {downtime: {arm: '< 2s'}}}",  # not an accelerator
    "  - {migrate: {vm: vm1, to: h2}, expect: {downtime: '< -1s'}}",  # a negative limit
    "  - wait: {for: {vm_running: vm1}, seconds: 3}",
    "  - wait: {for: {vm_running: vm1, host_dead: h1}}",
    "  - fault: {kind: impair, target: h1}",  # impair needs a parameter
    "  - fault: {kind: power_cut, target: h1, loss_pct: 5}",
    "  - fault: {kind: power_cut, target: h1, network: lab}",
    "  - checkpoint: {save: a, restore: b}",
    "  - run: {host: h1, command: ls, expect: {exit: 300}}",
    "  - run: {host: h1, command: ls, expect: {within: 3 hours}}",
    "  - run: {host: h1, command: ls, expect: {stdot: x}}",
    "  - wait: {until: {port_open: {host: h1, port: 22}, unit_active: {host: h1, unit: sshd}}}",
    "  - wait: {until: {unit_active: {host: h1, unit: 'a b'}}}",
])
def test_a_broken_scenario_is_refused_by_the_loader_and_the_schema(step):
    both_refuse(HEAD + step + "\n")


def test_unusual_but_valid_scenarios_pass_the_loader_and_the_schema():
    text = HEAD + ("  - {migrate: {vm: vm1, to: h2}, evacuate: null, expect: {downtime: {tcg: '< 12s', kvm: "
                   "'BETWEEN 1s and 3s'}, integrity: Not OK, heartbeats_lost: 0, completed: true}}\n"
                   "  - {run: {host: h1, command: 'xl info', expect: {exit: nonzero, stdout: 'x.*', within: 500ms}}}\n"
                   "  - wait: {until: {port_open: {host: services, port: 2049}}, timeout: 30}\n"
                   "  - {wait: {seconds: 1}, expect: {duration: '<= 1500ms'}}\n")
    parse_scenario(text, "s.yaml")
    assert [e.message for e in SCENARIO.iter_errors(yaml.safe_load(text))] == []
