"""A QEMU host's virtual hardware: NIC model, disk bus, firmware and CPU model.

A lab file's `hardware:` section (lab-wide, and per host over it) chooses them, so Xen's
behaviour can be qualified across them. Nothing chosen means today's machine, so a lab
file without `hardware:` keeps its exact QEMU command line. What QEMU offers is asked of
the QEMU installed here (`-device help`, `-cpu help`), and a lab asking for something it
lacks is refused with the list of what it has.
"""

from __future__ import annotations

import functools
import re
import shutil
import subprocess
from dataclasses import dataclass
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, field_validator

NicModel = Literal["virtio", "e1000", "e1000e", "rtl8139", "vmxnet3"]
DiskBus = Literal["virtio-blk", "sata", "nvme", "scsi"]
Firmware = Literal["direct", "bios", "uefi"]
NIC_MODELS: tuple[str, ...] = get_args(NicModel)
DISK_BUSES: tuple[str, ...] = get_args(DiskBus)
FIRMWARES: tuple[str, ...] = get_args(Firmware)

# The QEMU device of each choice (a disk bus may need a controller and a disk device;
# q35's AHCI controller is part of the machine).
NIC_DEVICES = {"virtio": "virtio-net-pci", "e1000": "e1000", "e1000e": "e1000e", "rtl8139": "rtl8139",
               "vmxnet3": "vmxnet3"}
DISK_DEVICES = {"virtio-blk": ("virtio-blk-pci",), "sata": ("ide-hd",), "nvme": ("nvme",),
                "scsi": ("virtio-scsi-pci", "scsi-hd")}
# The Linux driver dom0 binds to each (what `ethtool -i` and sysfs show); QEMU's rtl8139
# is a C+ chip, which 8139cp drives.
NIC_DRIVERS = {"virtio": "virtio_net", "e1000": "e1000", "e1000e": "e1000e", "rtl8139": "8139cp",
               "vmxnet3": "vmxnet3"}
DISK_DRIVERS = {"virtio-blk": "virtio_blk", "sata": "ahci", "nvme": "nvme", "scsi": "virtio_scsi"}
# What dom0's initramfs must load to find its root disk on each bus (dependencies follow
# from modules.dep). NIC drivers stay out of it on purpose: they load from the root file
# system after the management NIC (virtio, in the initramfs) is eth0, so names never race.
STORAGE_MODULES = ("ahci", "nvme", "virtio_scsi", "sd_mod")
CPU_MODEL_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}(,[+-][a-z0-9_.-]{1,32})*$"


@dataclass(frozen=True)
class Hardware:
    """A host's resolved hardware; the defaults are the machine every lab booted before."""

    nic: str = "virtio"
    disk: str = "virtio-blk"
    firmware: str = "direct"
    cpu: str | None = None  # None: the accelerator's choice (see lab/accel.py)

    @property
    def is_default(self) -> bool:
        return self == Hardware()

    @property
    def needs_storage_initrd(self) -> bool:
        """dom0 needs more than virtio_blk in its initramfs (another bus, or a disk GRUB boots)."""
        return self.disk != "virtio-blk" or self.firmware != "direct"

    def label(self) -> str:
        """A short name for reports: `bios-e1000-sata`, defaults left out (`default` if none differ)."""
        parts = [v for v, d in ((self.firmware, "direct"), (self.nic, "virtio"), (self.disk, "virtio-blk")) if v != d]
        if self.cpu:
            parts.append(self.cpu.replace(",", ""))
        return "-".join(parts) or "default"

    def as_dict(self, cpu_default: str | None = None) -> dict[str, str | None]:
        return {"nic": self.nic, "disk": self.disk, "firmware": self.firmware, "cpu": self.cpu or cpu_default}


class HardwareSpec(BaseModel):
    """`hardware:` in a lab file (lab-wide, or a host's own over it); keys left out inherit."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    nic: NicModel | None = Field(None, description="the lab NICs' model (the management NIC stays virtio)")
    disk: DiskBus | None = Field(None, description="the bus of the root and data disks")
    firmware: Firmware | None = Field(None, description="direct: QEMU loads Xen (multiboot); bios, uefi: GRUB "
                                      "from the host's own disk loads Xen (multiboot2)")
    cpu: str | None = Field(None, pattern=CPU_MODEL_PATTERN, description="a QEMU CPU model, e.g. qemu64,+svm")

    @field_validator("cpu")
    @classmethod
    def _cpu(cls, value: str | None) -> str | None:
        if value is not None and value.split(",")[0] in ("host", "max"):
            raise ValueError(f"{value!r}: host and max are not offered (under TCG Xen's PV dom0 crashes with "
                             "max; under KVM xenlab chooses host itself): name a model such as qemu64")
        return value


def resolve(lab: HardwareSpec | None, host: HardwareSpec | None) -> Hardware:
    """A host's hardware: its own choices over the lab's, the defaults under both."""
    chosen: dict[str, Any] = {}
    for layer in (lab, host):
        if layer is not None:
            chosen.update({k: v for k, v in layer.model_dump().items() if v is not None})
    return Hardware(**chosen)


def _help_lines(option: str) -> str | None:
    qemu = shutil.which("qemu-system-x86_64")
    if qemu is None:
        return None
    try:
        done = subprocess.run([qemu, option, "help"], capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None


@functools.cache
def qemu_devices() -> frozenset[str] | None:
    """The device names this QEMU offers (None: no QEMU here to ask)."""
    text = _help_lines("-device")
    return None if text is None else frozenset(re.findall(r'^name "([^"]+)"', text, re.MULTILINE))


@functools.cache
def qemu_cpu_models() -> frozenset[str] | None:
    """The x86 CPU model names this QEMU offers (None: no QEMU here to ask)."""
    text = _help_lines("-cpu")
    if text is None:
        return None
    return frozenset(m.group(1) for m in re.finditer(r"^x86\s+(\S+)", text, re.MULTILINE))


def available_nics(devices: frozenset[str]) -> list[str]:
    return [n for n in NIC_MODELS if NIC_DEVICES[n] in devices]


def available_disks(devices: frozenset[str]) -> list[str]:
    return [d for d in DISK_BUSES if all(dev in devices for dev in DISK_DEVICES[d])]


def qemu_problems(spec: HardwareSpec, devices: frozenset[str] | None,
                  cpus: frozenset[str] | None) -> list[tuple[str, str]]:
    """(key, message) for each choice this QEMU cannot provide; nothing when QEMU is not here."""
    problems: list[tuple[str, str]] = []
    if devices is not None:
        if spec.nic is not None and NIC_DEVICES[spec.nic] not in devices:
            problems.append(("nic", (f"nic: {spec.nic} ({NIC_DEVICES[spec.nic]}) is not in this QEMU "
                                     f"(it has: {', '.join(available_nics(devices)) or 'none'})")))
        if spec.disk is not None and spec.disk not in available_disks(devices):
            problems.append(("disk", (f"disk: {spec.disk} ({' + '.join(DISK_DEVICES[spec.disk])}) is not in this "
                                      f"QEMU (it has: {', '.join(available_disks(devices)) or 'none'})")))
    if cpus is not None and spec.cpu is not None and spec.cpu.split(",")[0] not in cpus:
        near = sorted(c for c in cpus if c.startswith(("qemu", "Nehalem", "EPYC", "Skylake")))[:8]
        problems.append(("cpu", (f"cpu: {spec.cpu.split(',')[0]!r} is not a CPU model of this QEMU (`qemu-system-x86_64 "
                                 f"-cpu help` lists them, e.g. {', '.join(near)})")))
    return problems
