"""Matrix files: axes of `hardware:` expand to validated, named lab specs; bad axes are
refused with file:line; the planner groups combinations into waves that fit in memory."""

from pathlib import Path

import pytest

from xenlab.errors import SpecError
from xenlab.lab.resources import HOST_RESERVE_MIB
from xenlab.matrix import MAX_COMBINATIONS, load_matrix, parse_matrix

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture()
def base(tmp_path) -> Path:
    (tmp_path / "lab.yaml").write_text("name: pool\nhosts:\n  h1:\n  h2:\n")
    return tmp_path


def plan(base: Path, text: str, available: int | None = None, cores: int | None = None):
    return parse_matrix(text, str(base / "matrix.yaml"), available, cores)


def problems(base: Path, text: str) -> list[tuple[int | None, str]]:
    with pytest.raises(SpecError) as info:
        plan(base, text)
    assert info.value.path == str(base / "matrix.yaml")
    return info.value.problems


def test_the_shipped_matrix_expands_to_six_named_labs():
    matrix = load_matrix(REPO / "qualification/matrix-firmware-nic.yaml")
    assert [c.name for c in matrix.combinations] == [
        "xen-pool2-direct-virtio", "xen-pool2-direct-e1000", "xen-pool2-bios-virtio", "xen-pool2-bios-e1000",
        "xen-pool2-uefi-virtio", "xen-pool2-uefi-e1000"]
    bios_e1000 = matrix.combinations[3].spec
    assert bios_e1000.name == "xen-pool2-bios-e1000"
    assert all(bios_e1000.hardware_of(h).firmware == "bios" and bios_e1000.hardware_of(h).nic == "e1000"
               for h in bios_e1000.hosts)
    assert len({c.lab_number for c in matrix.combinations}) == 6  # six address plans: side by side


def test_axes_keep_the_files_order_and_the_base_labs_other_hardware(base):
    (base / "lab.yaml").write_text("name: pool\nhardware: {disk: sata}\nhosts:\n  h1:\n")
    matrix = plan(base, "name: m\nlab: lab.yaml\naxes:\n  nic: [e1000, virtio]\n  firmware: [bios]\n")
    assert [c.name for c in matrix.combinations] == ["pool-e1000-bios", "pool-virtio-bios"]
    assert matrix.combinations[0].spec.hardware_of("h1").disk == "sata"
    assert matrix.to_json()["combinations"][0]["hardware"] == {"nic": "e1000", "firmware": "bios"}


def test_cpu_values_become_name_tokens(base):
    matrix = plan(base, "name: m\nlab: lab.yaml\nprefix: p\naxes:\n  cpu: ['qemu64', 'qemu64,+svm']\n")
    assert [c.name for c in matrix.combinations] == ["p-qemu64", "p-qemu64svm"]


def test_unknown_axis_names_its_line_and_the_axes(base):
    [(line, message)] = problems(base, "name: m\nlab: lab.yaml\naxes:\n  nic: [e1000]\n  bus: [sata]\n")
    assert line == 3 and "unknown axis 'bus'" in message and "firmware, nic, disk, cpu" in message


def test_value_not_valid_for_its_axis(base):
    [(line, message)] = problems(base, "name: m\nlab: lab.yaml\naxes:\n  firmware:\n    - direct\n    - coreboot\n")
    assert line == 6 and "'coreboot'" in message and "uefi" in message


def test_empty_matrix_and_empty_axis(base):
    [(line, message)] = problems(base, "name: m\nlab: lab.yaml\naxes: {}\n")
    assert line == 3 and "no axes" in message
    [(line, message)] = problems(base, "name: m\nlab: lab.yaml\naxes:\n  nic: []\n")
    assert line == 4 and "no values" in message


def test_too_many_combinations(base):
    cpus = ", ".join(f"qemu64-v{i}" for i in range(12))
    [(line, message)] = problems(base, f"name: m\nlab: lab.yaml\nprefix: p\naxes:\n  nic: [virtio, e1000, e1000e]\n"
                                       f"  cpu: [{cpus}]\n")
    assert line == 4 and f"36 combinations, more than {MAX_COMBINATIONS}" in message


def test_missing_base_lab_and_a_host_the_axis_cannot_reach(base):
    [(line, message)] = problems(base, "name: m\nlab: nope.yaml\naxes:\n  nic: [e1000]\n")
    assert line == 2 and "nope.yaml does not exist" in message
    (base / "lab.yaml").write_text("name: pool\nhosts:\n  h1:\n    hardware: {nic: rtl8139}\n")
    [(line, message)] = problems(base, "name: m\nlab: lab.yaml\naxes:\n  nic: [e1000]\n")
    assert line == 4 and "host h1" in message and "hardware.nic" in message


def test_a_name_too_long_asks_for_a_prefix(base):
    [(line, message)] = problems(base, "name: m\nlab: lab.yaml\naxes:\n  disk: [virtio-blk]\n  nic: [vmxnet3]\n"
                                       "  firmware: [direct]\n")
    assert "pool-virtio-blk-vmxnet3-direct" in message and "prefix" in message and line == 3


def test_a_combination_the_base_lab_refuses_names_the_matrix_and_the_base(base):
    (base / "lab.yaml").write_text("name: pool\nbackend: sim\nhosts:\n  h1:\n")
    [(line, message)] = problems(base, "name: m\nlab: lab.yaml\naxes:\n  nic: [e1000]\n")
    assert line == 3 and "combination pool-e1000" in message and "qemu labs only" in message


def test_waves_fit_in_memory_with_the_reserve(base):
    text = "name: m\nlab: lab.yaml\naxes:\n  firmware: [direct, bios, uefi]\n  nic: [virtio, e1000]\n"
    needed = plan(base, text).combinations[0].needed_mib  # 2 hosts + services: 2*(2048+96) + 512+96
    assert needed == 4896
    two_at_once = plan(base, text, 2 * needed + HOST_RESERVE_MIB)
    assert [len(w) for w in two_at_once.waves] == [2, 2, 2] and two_at_once.too_big == ()
    tight = plan(base, text, 2 * needed + HOST_RESERVE_MIB - 1)
    assert [len(w) for w in tight.waves] == [1] * 6
    none = plan(base, text, needed)  # not even one lab with the reserve
    assert none.waves == () and len(none.too_big) == 6
    unknown = plan(base, text, None)
    assert [len(w) for w in unknown.waves] == [1] * 6


def test_a_wave_never_has_more_vcpus_than_the_machine_has_cores(base):
    text = "name: m\nlab: lab.yaml\naxes:\n  firmware: [direct, bios, uefi]\n  nic: [virtio, e1000]\n"
    plenty = 64 * 1024
    [first, *_] = plan(base, text, plenty).combinations
    assert first.needed_vcpus == 3  # h1, h2 and the services node, one vCPU each
    assert [len(w) for w in plan(base, text, plenty, cores=2).waves] == [1] * 6  # one lab already overcommits 2
    assert [len(w) for w in plan(base, text, plenty, cores=6).waves] == [2, 2, 2]
    assert [len(w) for w in plan(base, text, plenty, cores=8).waves] == [2, 2, 2]  # 3 would need 9
    assert [len(w) for w in plan(base, text, 2 * first.needed_mib + HOST_RESERVE_MIB, cores=64).waves] == [2, 2, 2]
    assert plan(base, text, plenty, cores=6).to_json()["cores"] == 6
