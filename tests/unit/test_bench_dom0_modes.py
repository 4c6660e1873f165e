"""bench/dom0_modes.py's derived lab files: every host's dom0 in the mode asked, and still a
lab file xenlab accepts (or refuses with the PVH-under-TCG reason)."""

import importlib.util
from pathlib import Path

import pytest

from xenlab.errors import SpecError
from xenlab.spec import load_lab

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("dom0_modes_bench", REPO / "bench" / "dom0_modes.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_pv_variant_of_the_default_lab_is_a_valid_lab_of_its_own(bench, tmp_path):
    path = tmp_path / "pv.yaml"
    path.write_text(bench.derived_lab_text((REPO / "labs/xen-pool2.yaml").read_text(), "pv", kvm=False))
    lab = load_lab(path)
    assert lab.name == "xen-pool2-dom0pv"
    assert lab.xen.dom0.mode == "pv" and lab.bmc == "ipmi" and sorted(lab.hosts) == ["h1", "h2"]


def test_pvh_variant_without_kvm_is_refused_with_the_measured_reason(bench, tmp_path):
    path = tmp_path / "pvh.yaml"
    path.write_text(bench.derived_lab_text((REPO / "labs/xen-pool2.yaml").read_text(), "pvh", kvm=False))
    with pytest.raises(SpecError) as refused:
        load_lab(path)
    assert "acpi_tb_verify_checksum" in str(refused.value) and "accel: kvm" in str(refused.value)


def test_pvh_variant_with_kvm_asks_for_kvm_and_overrides_a_hosts_own_mode(bench, tmp_path):
    text = "name: x\nxen: {cmdline: 'sched=credit2'}\nhosts:\n  h1: {xen: {dom0: {mode: pv}}}\n  h2:\n"
    path = tmp_path / "pvh.yaml"
    path.write_text(bench.derived_lab_text(text, "pvh", kvm=True))
    lab = load_lab(path)
    assert lab.accel == "kvm" and lab.xen.cmdline == "sched=credit2"
    assert lab.xen.dom0.mode == "pvh" and lab.hosts["h1"].xen.dom0.mode == "pvh"
