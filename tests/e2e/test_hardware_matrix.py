"""Virtual hardware for real: labs whose hosts have other NIC models, disk buses and
firmware boot nested Xen under TCG; dom0 finds its root disk on the chosen bus, its lab
NIC has the chosen driver and reaches the other dom0, and `xl dmesg` says how Xen was
booted (QEMU's multiboot loader, or GRUB from the disk under SeaBIOS or OVMF).

Each lab is its own (the shared `pool2` lab is the default hardware): one non-default
combination and both firmware labs run on every e2e run. Bring-up times are printed.
Measured 2026-12-04 (2-core TCG): the BIOS and UEFI tests took 58 s and 60 s on a quiet
machine and 91 s and 102 s with a CPU-bound process alongside.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from xenlab.hardware import DISK_DRIVERS, NIC_DRIVERS
from xenlab.lab import Lab
from xenlab.spec import load_lab
from xenlab.waiting import wait_for

pytestmark = pytest.mark.e2e

# Which driver sits under a disk, up its sysfs path (sd + ahci, nvme, sd + virtio_scsi, virtio_blk).
DRIVERS_UNDER = ('p=$(readlink -f /sys/block/{disk}/device); while [ "$p" != / ]; do '
                 '[ -e "$p/driver" ] && basename "$(readlink "$p/driver")"; p=$(dirname "$p"); done')

DIRECT_SATA_NVME = """\
name: hw-direct
services: null
hardware: {nic: e1000, disk: sata}
hosts:
  h1:
  h2:
    hardware: {nic: rtl8139, disk: nvme}
"""
BIOS = """\
name: hw-bios
services: null
hardware: {firmware: bios}
hosts:
  h1:
    hardware: {nic: e1000e, disk: scsi}
  h2:
    hardware: {nic: vmxnet3}
"""
UEFI = """\
name: hw-uefi
services: null
hardware: {firmware: uefi}
hosts:
  h1:
    hardware: {nic: e1000, disk: nvme}
  h2:
"""


@pytest.fixture(scope="module", autouse=True)
def from_ready():
    """These tests boot labs of their own hardware: the shared `pool2` lab (default
    hardware) is neither needed nor booted for them."""
    yield


def bring_up(tmp_path: Path, text: str) -> tuple[Lab, list[str]]:
    path = tmp_path / "lab.yaml"
    path.write_text(text)
    lab = Lab(load_lab(path), str(path))
    started = time.monotonic()
    lines: list[str] = []

    def progress(subject: str, message: str) -> None:
        lines.append(f"{time.monotonic() - started:6.1f}s {subject}: {message}")

    try:
        lab.up(progress=progress, accel="tcg", tied=True, timeout=1500, warm=False)
    except BaseException:
        print("\n".join(lines))
        raise
    print("\n".join([f"bring-up of {lab.name}:", *lines, f"stages: {lab.bringup_stages}"]))
    return lab, lines


def check_hardware(lab: Lab) -> None:
    """Every host: Xen answers, its root disk hangs off the chosen bus's driver, its lab NIC
    has the chosen model's driver, and it pings the other hosts on the lab network."""
    for host in lab.hosts:
        hw = host.plan.hardware
        info = host.succeed("xl info", timeout=120)
        assert "xen_version" in info and "virt_caps" in info
        source = host.succeed("findmnt -no SOURCE /").strip()
        disk = host.succeed(f"lsblk -no PKNAME {source}").strip() or Path(source).name
        drivers = host.succeed(DRIVERS_UNDER.format(disk=disk)).split()
        transport = host.succeed(f"lsblk -dno TRAN /dev/{disk}").strip()
        print(f"{host.name}: {hw} root {source} on {disk} (TRAN {transport or '-'}, drivers {drivers})")
        assert DISK_DRIVERS[hw.disk] in drivers, (hw.disk, drivers)
        if hw.disk in ("sata", "nvme"):
            assert transport == hw.disk
        if hw.firmware != "direct":
            assert source.endswith(("3", "p3")), f"{source}: firmware boots the root partition of a GPT disk"
        nic = host.plan.nics[0]
        driver = host.succeed(f"basename $(readlink /sys/class/net/{nic.device}/device/driver)").strip()
        assert driver == NIC_DRIVERS[hw.nic], (hw.nic, driver)
        mac = host.succeed(f"cat /sys/class/net/{nic.device}/address").strip()
        assert mac == nic.mac
        # networkd bridges it (matched by MAC): `ready` is `xl info`, and under a loaded TCG
        # machine networkd may still be at it (seen here: restarted after a start timeout).
        bridged = f"grep -qx INTERFACE=xenbr0 /sys/class/net/{nic.device}/master/uevent"
        wait_for(lambda h=host, c=bridged: h.run(c).ok, f"{host.name}: {nic.device} bridged into xenbr0", 300, 2,
                 evidence=lambda h=host: h.run("ip -br link; ip -br addr").stdout)
        for other in lab.hosts:
            if other is not host:
                host.succeed(f"ping -c 3 -W 5 {other.address()}", timeout=60)


def xen_booted_by(lab: Lab) -> dict[str, str]:
    """Each host's `xl dmesg` lines saying what loaded Xen."""
    found = {}
    for host in lab.hosts:
        dmesg = host.succeed("xl dmesg", timeout=60)
        found[host.name] = "\n".join(line for line in dmesg.splitlines()
                                     if "Bootloader:" in line or "EFI RAM map" in line)
    return found


def test_direct_boot_with_sata_nvme_e1000_and_rtl8139(tmp_path, run_base):
    lab, _ = bring_up(tmp_path, DIRECT_SATA_NVME)
    try:
        check_hardware(lab)
        for host, lines in xen_booted_by(lab).items():
            assert "Bootloader: qemu" in lines, (host, lines)
        status = lab.status()
        assert [m["hardware"] for m in status["machines"]] == [
            {"nic": "e1000", "disk": "sata", "firmware": "direct", "cpu": "qemu64"},
            {"nic": "rtl8139", "disk": "nvme", "firmware": "direct", "cpu": "qemu64"}]
        [h1, _h2] = lab.inventory()
        assert h1.hardware["nic"] == "e1000" and any(d.startswith("sda") for d in h1.disks)
    finally:
        lab.down()


def test_bios_grub_boots_xen_with_virtio_scsi_e1000e_and_vmxnet3(tmp_path, run_base):
    lab, _ = bring_up(tmp_path, BIOS)
    try:
        check_hardware(lab)
        for host, lines in xen_booted_by(lab).items():
            assert "Bootloader: GRUB" in lines and "EFI RAM map" not in lines, (host, lines)
    finally:
        lab.down()


def test_uefi_grub_boots_xen_with_nvme_and_e1000(tmp_path, run_base):
    lab, _ = bring_up(tmp_path, UEFI)
    try:
        check_hardware(lab)
        for host, lines in xen_booted_by(lab).items():
            assert "Bootloader: GRUB" in lines and "EFI RAM map" in lines, (host, lines)
        for host in lab.hosts:
            assert host.firmware_vars is not None and host.firmware_vars.is_file()
    finally:
        lab.down()
