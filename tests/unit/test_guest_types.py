"""Guest types (pv, pvh, hvm): what an image declares, what a host runs, how each toolstack
is told, and a scenario refused before anything starts when the lab cannot run its guests."""

from __future__ import annotations

from pathlib import Path

import pytest

from xenlab.errors import SpecError, XenlabError
from xenlab.images.recipes import Recipe, load_recipes
from xenlab.lab import Lab
from xenlab.lab.accel import guest_types_under
from xenlab.lab.host import parse_virt_caps
from xenlab.recipe_facts import image_guest_types, runnable_guest_types
from xenlab.scenario.session import plan_run
from xenlab.spec import load_lab
from xenlab.toolstack.base import GuestSpec
from xenlab.toolstack.xapi import vm_record
from xenlab.toolstack.xl import guest_config

REPO = Path(__file__).resolve().parents[2]
XL_INFO = """host                   : h1
virt_caps              : pv hvm hvm_directio pv_directio shadow gnttab-v1 gnttab-v2
total_memory           : 2047
"""


@pytest.fixture(autouse=True)
def no_labs_up(tmp_path, monkeypatch):
    monkeypatch.setenv("XENLAB_RUN_DIR", str(tmp_path / "runs"))


def config(guest_type: str) -> dict[str, str]:
    text = guest_config(GuestSpec("g1", type=guest_type), sr="/srv/xenlab", address="10.1.2.101/24",
                        mac="00:16:3e:00:00:01", heartbeat_to="10.1.2.2:9999", heartbeat_key="k" * 64)
    return {k.strip(): v.strip() for k, v in (line.split("=", 1) for line in text.splitlines())}


def test_every_type_boots_the_shared_kernel_with_pv_frontends():
    for guest_type in ("pv", "pvh", "hvm"):
        c = config(guest_type)
        assert c["type"] == f'"{guest_type}"'
        assert c["kernel"] == '"/srv/xenlab/images/pv-guest/vmlinuz"'
        assert "vdev=xvda" in c["disk"] and "bridge=xenbr0" in c["vif"]
    assert "device_model_version" not in config("pvh") and "device_model_version" not in config("pv")


def test_an_hvm_guest_gets_a_device_model_a_pv_nic_and_its_console_on_the_uart():
    c = config("hvm")
    assert c["device_model_version"] == '"qemu-xen"' and c["xen_platform_pci"] == "1" and c["vnc"] == "0"
    assert "type=vif" in c["vif"]  # the PV NIC only: no emulated NIC beside it
    assert "console=ttyS0" in c["extra"] and "console=hvc0" in config("pvh")["extra"]


def test_an_unknown_guest_type_is_refused():
    with pytest.raises(XenlabError, match="unknown guest type 'kvm'"):
        GuestSpec("g1", type="kvm")


def test_xapi_is_told_the_type_as_xapi_derives_it():
    pv, pvh, hvm = (vm_record(GuestSpec("g", type=t)) for t in ("pv", "pvh", "hvm"))
    assert (pv["domain_type"], pv["HVM_boot_policy"], pv["PV_bootloader"]) == ("pv", "", "pygrub")
    assert (pvh["domain_type"], pvh["HVM_boot_policy"]) == ("pvh", "")
    assert (hvm["domain_type"], hvm["HVM_boot_policy"], hvm["PV_bootloader"]) == ("hvm", "BIOS order", "")
    assert hvm["HVM_boot_params"] == {"order": "c"} and hvm["platform"]["acpi"] == "1"


def test_the_shipped_xen_image_declares_all_three_and_carries_a_device_model():
    recipes = load_recipes()
    assert recipes["debian-xen"].runs == ("pv", "pvh", "hvm")
    assert "qemu-system-xen" in recipes["debian-xen"].packages
    assert image_guest_types()["debian-xen"] == ("pv", "pvh", "hvm")
    assert "services" not in image_guest_types()  # not a Xen image


def test_recipes_refuse_impossible_declarations():
    base = {"name": "x", "kind": "debootstrap", "boot": "xen", "packages": ["xen-system-amd64"]}
    with pytest.raises(ValueError, match="add qemu-system-xen"):
        Recipe(**base, guest_types=["pv", "hvm"])
    with pytest.raises(ValueError, match="for Xen host images"):
        Recipe(**{**base, "boot": "linux"}, guest_types=["pv"])
    with pytest.raises(ValueError, match="at least pv"):
        Recipe(**base, guest_types=[])
    assert Recipe(**base).runs == ("pv",)


def test_a_declaration_does_not_change_what_the_image_is():
    base = {"name": "x", "kind": "debootstrap", "boot": "xen", "packages": ["xen-system-amd64"]}
    assert Recipe(**base, guest_types=["pv", "pvh"]).digest() == Recipe(**base).digest()


def test_virt_caps_narrow_what_an_image_declares():
    assert parse_virt_caps(XL_INFO) == ["pv", "hvm", "hvm_directio", "pv_directio", "shadow", "gnttab-v1", "gnttab-v2"]
    assert parse_virt_caps("host : h1\n") == []
    assert runnable_guest_types(("pv", "pvh", "hvm"), ["pv", "hvm", "shadow"]) == ("pv", "pvh", "hvm")
    assert runnable_guest_types(("pv", "pvh", "hvm"), ["pv", "shadow"]) == ("pv",)  # no nested SVM/VMX
    assert runnable_guest_types(("pv", "pvh"), []) == ("pv", "pvh")  # not read yet: the declaration


def test_doctor_says_what_the_cpu_model_gives():
    assert guest_types_under("tcg", "qemu64,+svm").startswith("pv, pvh, hvm")
    assert guest_types_under("tcg", "qemu64").startswith("pv (TCG CPU qemu64)")
    assert guest_types_under("kvm", "host").startswith("pv, pvh, hvm")


def test_a_lab_runs_what_its_file_asks_and_every_host_image_declares(tmp_path, monkeypatch):
    pv_only = Lab(load_lab(REPO / "labs/xen-pool2.yaml"))
    assert pv_only.capabilities.guest_types == ("pv",) and not pv_only.spec.nested_hvm
    every = Lab(load_lab(REPO / "labs/xen-pool2-guests.yaml"))
    assert every.capabilities.guest_types == ("pv", "pvh", "hvm") and every.spec.nested_hvm
    images = tmp_path / "images"
    images.mkdir()
    for name in ("debian-xen", "services"):
        (images / f"{name}.yaml").write_text((REPO / "images" / f"{name}.yaml").read_text())
    (images / "plain-xen.yaml").write_text("name: plain-xen\nkind: debootstrap\nboot: xen\npackages: [xen-system-amd64]\n")
    monkeypatch.setenv("XENLAB_IMAGES", str(images))
    mixed = tmp_path / "mixed.yaml"
    mixed.write_text("name: mixed\nguest_types: [pv, pvh]\nhosts:\n  h1:\n  h2:\n    image: plain-xen\n")
    with pytest.raises(SpecError) as info:
        load_lab(mixed)
    assert info.value.problems == [(2, "h2: image 'plain-xen' does not run pvh guests (it declares pv in its recipe)")]


def test_lab_files_refuse_empty_or_repeated_guest_types(tmp_path):
    for text, words in (("guest_types: []", "runs no guests"), ("guest_types: [pv, pv]", "listed twice"),
                        ("guest_types: [kvm]", "'pv', 'pvh' or 'hvm'")):
        lab = tmp_path / "bad.yaml"
        lab.write_text(f"name: bad\n{text}\nhosts:\n  h1:\n")
        with pytest.raises(SpecError) as info:
            load_lab(lab)
        [(line, message)] = info.value.problems
        assert line == 2 and words in message, message


def test_a_guest_type_the_lab_cannot_run_is_refused_before_anything_starts(tmp_path):
    scenario = tmp_path / "hvm.yaml"
    scenario.write_text("name: hvm\nsteps:\n  - form_pool: {members: [h1, h2]}\n"
                        "  - create_vm: {name: w1, host: h1, type: pv}\n"
                        "  - create_vm:\n      name: w2\n      host: h1\n      type: hvm\n")
    with pytest.raises(SpecError) as info:
        plan_run(str(scenario), str(REPO / "labs/xen-pool2.yaml"))
    assert info.value.problems == [(8, ("guest w2 is a hvm guest, but lab xen-pool2 runs pv guests only (a lab "
                                        "file asks for more with `guest_types`, and its host images must declare "
                                        "them)"))]
    assert plan_run(str(scenario), str(REPO / "labs/xen-pool2-guests.yaml")).lab.capabilities.guest_types == (
        "pv", "pvh", "hvm")
    # the simulator starts any type, as xapi does
    assert plan_run(str(scenario), str(REPO / "labs/xapi-sim-pool3.yaml")).lab.capabilities.guest_types == (
        "pv", "pvh", "hvm")


def test_a_scenario_names_a_known_type_or_is_refused(tmp_path):
    scenario = tmp_path / "odd.yaml"
    scenario.write_text("name: odd\nsteps:\n  - form_pool: {members: [h1, h2]}\n"
                        "  - create_vm: {name: w1, host: h1, type: windows}\n")
    with pytest.raises(SpecError) as info:
        plan_run(str(scenario), str(REPO / "labs/xen-pool2.yaml"))
    [(line, message)] = info.value.problems
    assert line == 4 and "'pv', 'pvh' or 'hvm'" in message
