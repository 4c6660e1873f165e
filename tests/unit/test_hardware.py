"""A lab file's `hardware:`: validated with lines, resolved per host, mapped to QEMU argv;
a lab without it keeps the exact command line it had before `hardware:` existed."""

import json
from pathlib import Path

import pytest

from xenlab.errors import SpecError
from xenlab.hardware import Hardware, HardwareSpec, qemu_cpu_models, qemu_devices, qemu_problems, resolve
from xenlab.lab.accel import AccelChoice
from xenlab.lab.qemu import OVMF_CODE, MachineFiles, qemu_argv
from xenlab.plan import plan_lab
from xenlab.spec import parse_lab

HERE = Path(__file__).resolve().parent
RUN = Path("/tmp/xenlab-0/alpha")
TCG = AccelChoice("tcg", "qemu64", "test")
BASE = "name: alpha\nnetworks:\n  lab:\n  storage:\nhosts:\n"


def files(name: str, data: int = 0, firmware_vars: bool = False) -> MachineFiles:
    d, img = RUN / "machines" / name, Path("/cache/img,v1")
    return MachineFiles(d / "root.qcow2", d / "seed.img", d / "serial.log", d / "qmp.sock", d / "qemu.pid",
                        img / "vmlinuz", img / "initrd.img", img / "xen.elf",
                        tuple(d / f"data-d{i + 1}.qcow2" for i in range(data)),
                        d / "OVMF_VARS.fd" if firmware_vars else None)


def argv_of(lab_text: str, host: str = "h1", **kw) -> list[str]:
    plan = plan_lab(parse_lab(lab_text))
    machine = plan.machine(host)
    sockets = {n.name: RUN / "net" / f"{n.name}.vde" for n in plan.networks}
    f = files(host, len(machine.data_disks), machine.hardware.firmware == "uefi")
    return qemu_argv(machine, f, kw.pop("accel", TCG), 40022, sockets)


def values(argv: list[str], option: str) -> list[str]:
    return [argv[i + 1] for i, a in enumerate(argv) if a == option]


def problems(text: str) -> list[tuple[int | None, str]]:
    with pytest.raises(SpecError) as info:
        parse_lab(text, "lab.yaml")
    return info.value.problems


def test_a_lab_without_hardware_keeps_its_command_line_byte_for_byte():
    before = json.loads((HERE / "default_argv_before_hardware.json").read_text())
    plan = plan_lab(parse_lab(before["lab"]))
    sockets = {n.name: RUN / "net" / f"{n.name}.vde" for n in plan.networks}
    argv = qemu_argv(plan.machine("h1"), files("h1", 1), TCG, 40022, sockets)
    assert argv == before["argv"]


def test_default_hardware_written_out_changes_nothing():
    plain = argv_of(BASE + "  h1: {nics: [lab, storage]}\n")
    spelled = argv_of(BASE + "  h1:\n    nics: [lab, storage]\n    hardware: {nic: virtio, disk: virtio-blk, "
                      "firmware: direct}\n")
    assert spelled == plain


def test_host_hardware_overrides_the_lab_default_key_by_key():
    spec = parse_lab("name: alpha\nhardware: {nic: e1000, disk: sata}\nhosts:\n  h1:\n  h2:\n"
                     "    hardware: {nic: rtl8139}\n")
    assert spec.hardware_of("h1") == Hardware(nic="e1000", disk="sata")
    assert spec.hardware_of("h2") == Hardware(nic="rtl8139", disk="sata")
    plan = plan_lab(spec)
    assert plan.services is not None and plan.services.hardware.is_default


@pytest.mark.parametrize(("model", "device"), [("virtio", "virtio-net-pci"), ("e1000", "e1000"), ("e1000e", "e1000e"),
                                               ("rtl8139", "rtl8139"), ("vmxnet3", "vmxnet3")])
def test_nic_model_applies_to_lab_nics_only(model, device):
    argv = argv_of(BASE + f"  h1:\n    nics: [lab, storage]\n    hardware: {{nic: {model}}}\n")
    nics = [d for d in values(argv, "-device") if "netdev=" in d]
    assert nics[0].startswith("virtio-net-pci,netdev=mgmt")  # the management NIC stays eth0 on virtio
    assert [d.split(",")[0] for d in nics[1:]] == [device, device]
    assert all("mac=02:58:" in d for d in nics)


def test_sata_puts_root_and_data_disks_on_ahci_ports_and_the_seed_on_virtio():
    argv = argv_of(BASE + "  h1:\n    disks: [{name: d1, size_gib: 1}]\n    hardware: {disk: sata}\n")
    devices = values(argv, "-device")
    assert "ide-hd,drive=root,bus=ide.0" in devices and "ide-hd,drive=data0,bus=ide.1" in devices
    assert "virtio-blk-pci,drive=seed" in devices
    assert not any(d.startswith("virtio-blk-pci,drive=root") for d in devices)


def test_nvme_and_scsi_devices():
    nvme = values(argv_of(BASE + "  h1:\n    hardware: {disk: nvme}\n"), "-device")
    assert "nvme,drive=root,serial=xlroot" in nvme
    scsi = values(argv_of(BASE + "  h1:\n    disks: [{name: d1, size_gib: 1}]\n    hardware: {disk: scsi}\n"),
                  "-device")
    assert scsi.count("virtio-scsi-pci,id=scsi0") == 1
    assert "scsi-hd,drive=root,bus=scsi0.0,channel=0,scsi-id=0,lun=0" in scsi
    assert "scsi-hd,drive=data0,bus=scsi0.0,channel=0,scsi-id=1,lun=0" in scsi


def test_bios_boots_from_the_root_disk_without_kernel_options():
    argv = argv_of(BASE + "  h1:\n    hardware: {firmware: bios}\n")
    assert "-kernel" not in argv and "-initrd" not in argv and "-append" not in argv
    assert "virtio-blk-pci,drive=root,bootindex=1" in values(argv, "-device")
    assert "virtio-blk-pci,drive=seed,bootindex=9" in values(argv, "-device")  # GRUB reads it: firmware connects it
    assert not any("pflash" in d for d in values(argv, "-drive"))


def test_uefi_uses_read_only_ovmf_code_and_the_hosts_own_vars():
    argv = argv_of(BASE + "  h1:\n    hardware: {firmware: uefi, disk: nvme}\n")
    drives = values(argv, "-drive")
    assert f"if=pflash,format=raw,unit=0,readonly=on,file={OVMF_CODE}" in drives
    assert f"if=pflash,format=raw,unit=1,file={RUN}/machines/h1/OVMF_VARS.fd" in drives
    assert "nvme,drive=root,serial=xlroot,bootindex=1" in values(argv, "-device")
    assert "-kernel" not in argv


def test_cpu_model_overrides_the_accelerators_choice():
    argv = argv_of(BASE + "  h1:\n    hardware: {cpu: 'qemu64,+svm'}\n")
    assert values(argv, "-cpu") == ["qemu64,+svm"]
    assert values(argv_of(BASE + "  h1:\n"), "-cpu") == ["qemu64"]


def test_unknown_model_names_its_line_and_the_choices():
    found = problems("name: alpha\nhosts:\n  h1:\n    hardware:\n      nic: ne2000\n")
    assert found[0][0] == 5
    assert "ne2000" in found[0][1] and "e1000e" in found[0][1] and "vmxnet3" in found[0][1]
    found = problems("name: alpha\nhardware: {disk: ide}\nhosts:\n  h1:\n")
    assert found[0][0] == 2 and "nvme" in found[0][1]


def test_host_and_max_cpus_are_refused_with_a_reason():
    found = problems("name: alpha\nhosts:\n  h1:\n    hardware: {cpu: max}\n")
    assert found[0][0] == 4 and "qemu64" in found[0][1]


def test_hardware_is_for_qemu_labs_only():
    found = problems("name: alpha\nbackend: sim\nhardware: {nic: e1000}\nhosts:\n  h1:\n")
    assert found == [(3, "hardware: virtual hardware is chosen for qemu labs only")]


def test_what_this_qemu_lacks_is_refused_with_what_it_has():
    devices = frozenset({"virtio-net-pci", "e1000", "virtio-blk-pci", "nvme"})
    spec = HardwareSpec(nic="vmxnet3", disk="scsi", cpu="Pentium9")
    found = dict(qemu_problems(spec, devices, frozenset({"qemu64", "Nehalem"})))
    assert found["nic"] == "nic: vmxnet3 (vmxnet3) is not in this QEMU (it has: virtio, e1000)"
    assert "it has: virtio-blk, nvme" in found["disk"]
    assert "'Pentium9' is not a CPU model" in found["cpu"] and "qemu64" in found["cpu"]
    assert qemu_problems(spec, None, None) == []  # no QEMU to ask: nothing is claimed


def test_the_qemu_here_has_every_model_and_bus():
    devices, cpus = qemu_devices(), qemu_cpu_models()
    if devices is None or cpus is None:
        pytest.skip("no qemu-system-x86_64 on this machine")
    for nic in ("virtio", "e1000", "e1000e", "rtl8139", "vmxnet3"):
        for disk in ("virtio-blk", "sata", "nvme", "scsi"):
            assert qemu_problems(HardwareSpec(nic=nic, disk=disk, cpu="qemu64,+svm"), devices, cpus) == []


def test_labels_name_what_differs():
    assert Hardware().label() == "default" and Hardware().is_default
    assert Hardware(firmware="bios", nic="e1000").label() == "bios-e1000"
    assert resolve(None, None) == Hardware()
    assert not Hardware(disk="sata").is_default and Hardware(disk="sata").needs_storage_initrd
    assert Hardware(firmware="uefi").needs_storage_initrd and not Hardware(nic="e1000").needs_storage_initrd
