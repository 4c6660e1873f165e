"""Lab-file validation: good files load with defaults, bad ones name file, line and problem."""

from pathlib import Path

import pytest

from xenlab.errors import SpecError
from xenlab.spec import LabSpec, lab_json_schema, load_lab, parse_lab

REPO = Path(__file__).resolve().parents[2]


def problems(text: str) -> list[tuple[int | None, str]]:
    with pytest.raises(SpecError) as info:
        parse_lab(text, "lab.yaml")
    assert info.value.path == "lab.yaml"
    return info.value.problems


@pytest.mark.parametrize("path", sorted((REPO / "labs").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_lab_files_are_valid(path):
    spec = load_lab(path)
    assert spec.name == path.stem


def test_defaults_make_the_default_lab_a_few_lines():
    spec = load_lab(REPO / "labs/xen-pool2.yaml")
    assert list(spec.hosts) == ["h1", "h2"]
    h1 = spec.hosts["h1"]
    assert (h1.image, h1.vcpus, h1.memory_mib, h1.dom0_memory_mib, spec.nics_of(h1)) == (
        "debian-xen", 1, 2048, 1024, ["lab"])
    assert spec.services is not None and spec.services.name == "services"
    assert list(spec.networks) == ["lab"]


def test_full_file_round_trips():
    spec = parse_lab(
        "name: big\naccel: tcg\nnetworks:\n  lab: {subnet: 192.168.50.0/24}\n  storage:\n"
        "hosts:\n  a1:\n    vcpus: 2\n    memory_mib: 4096\n    nics: [lab, storage]\n"
        "    disks: [{name: scratch, size_gib: 2}]\nservices:\n  nics: [lab, storage]\n"
    )
    assert str(spec.networks["lab"].subnet) == "192.168.50.0/24"
    assert spec.hosts["a1"].disks[0].size_gib == 2
    assert spec.machine_names() == ["a1", "services"]


def test_unknown_key_names_its_line():
    [(line, message)] = problems("name: x\nhosts:\n  h1:\n    memroy_mib: 3\n")
    assert line == 4
    assert "unknown key 'memroy_mib'" in message


def test_unknown_top_level_key():
    [(line, message)] = problems("name: x\nhosts:\n  h1:\nhostz: 1\n")
    assert line == 4 and "hostz" in message


def test_nic_on_missing_network_points_at_the_nic():
    [(line, message)] = problems("name: x\nhosts:\n  h1:\n    nics:\n      - lab\n      - storage\n")
    assert line == 6
    assert "'storage' is not a network" in message


def test_several_problems_are_all_reported():
    found = problems("name: Bad_Name\nhosts:\n  h1:\n    vcpus: 0\n    memory_mib: 100\n")
    lines = sorted(line for line, _ in found)
    assert lines == [1, 4, 5]


def test_dom0_must_leave_room_for_guests():
    [(line, message)] = problems("name: x\nhosts:\n  h1:\n    memory_mib: 1024\n    dom0_memory_mib: 1000\n")
    assert line == 5 and "at least 256 MiB" in message


def test_public_subnet_is_refused():
    [(line, message)] = problems("name: x\nnetworks:\n  lab: {subnet: 8.8.8.0/24}\nhosts:\n  h1:\n")
    assert line == 3 and "private" in message


def test_overlapping_subnets_are_refused():
    [(line, message)] = problems(
        "name: x\nnetworks:\n  a: {subnet: 10.1.0.0/16}\n  b:\n    subnet: 10.1.2.0/24\nhosts:\n  h1: {nics: [a]}\n")
    assert line == 5 and "overlaps" in message


def test_default_nics_follow_the_first_network():
    spec = parse_lab("name: x\nnetworks:\n  front:\n  back:\nhosts:\n  h1:\n")
    assert spec.nics_of(spec.hosts["h1"]) == ["front"] and spec.nics_of(spec.services) == ["front"]


def test_services_name_clash():
    [(line, message)] = problems("name: x\nhosts:\n  h1:\nservices:\n  name: h1\n")
    assert line == 5 and "also a host" in message


def test_yaml_syntax_error_has_a_line():
    [(line, message)] = problems("name: x\nhosts:\n  h1: [\n")
    assert line == 4 and "syntax" in message


def test_duplicate_keys_are_errors():
    [(line, message)] = problems("name: x\nhosts:\n  h1:\n  h1:\n")
    assert line == 4 and "duplicate key 'h1'" in message


def test_empty_and_non_mapping_files():
    assert problems("")[0][1].startswith("the file is empty")
    assert "mapping" in problems("- a\n- b\n")[0][1]


def test_missing_file(tmp_path):
    with pytest.raises(SpecError) as info:
        load_lab(tmp_path / "nope.yaml")
    assert "file not found" in str(info.value)


def test_hosts_are_required():
    [(_, message)] = problems("name: x\n")
    assert "missing required key 'hosts'" in message


def test_json_schema_describes_hosts():
    schema = lab_json_schema()
    assert '"hosts"' in schema and '"additionalProperties": false' in schema
    assert LabSpec.model_json_schema()["required"] == ["name", "hosts"]
