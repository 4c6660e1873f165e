"""What a QEMU host's virtual hardware (`hardware:`, see xenlab/hardware.py) needs before
it starts: its image's variant (drivers for another disk bus, or a disk GRUB boots from),
its own UEFI variable store, and, when firmware boots it, its command lines on its seed disk."""

from __future__ import annotations

import shutil
from pathlib import Path

from ..errors import XenlabError
from ..images.cache import BuiltImage
from ..images.variant import BuiltVariant, ensure_variant, seed_boot_config
from ..plan import LabPlan, MachinePlan
from ..waiting import Progress
from .qemu import OVMF_CODE, OVMF_VARS, dom0_cmdline, xen_cmdline


def variant_kind(machine: MachinePlan) -> str | None:
    """Which variant of its image a machine boots: `boot` (firmware), `storage` (another
    disk bus, direct boot) or None (the image as it is)."""
    hardware = machine.hardware
    if machine.role != "xen" or not hardware.needs_storage_initrd:
        return None
    return "boot" if hardware.firmware != "direct" else "storage"


def ensure_variants(plan: LabPlan, built: dict[str, BuiltImage], progress: Progress) -> dict[str, BuiltVariant]:
    """Host name -> the variant it boots (built once per image and kind, then cached)."""
    found: dict[str, BuiltVariant] = {}
    for machine in plan.machines:
        kind = variant_kind(machine)
        if kind is not None:
            found[machine.name] = ensure_variant(built[machine.image_key], kind, progress)
    if any(m.hardware.firmware == "uefi" for m in plan.machines):
        for path in (OVMF_CODE, OVMF_VARS):
            if not path.exists():
                raise XenlabError(f"firmware uefi needs {path} (Debian package ovmf); run ./setup.sh")
    return found


def boot_config(machine: MachinePlan) -> str | None:
    """The seed disk's GRUB variables of a firmware-booted host (None for a direct boot):
    the very Xen and dom0 command lines a direct boot gives QEMU."""
    if machine.role != "xen" or machine.hardware.firmware == "direct":
        return None
    return seed_boot_config(xen_cmdline(machine), dom0_cmdline(machine))


def prepare_firmware(firmware_vars: Path | None) -> None:
    """A UEFI host starts with a fresh copy of Debian's OVMF_VARS (its NVRAM) in its run directory."""
    if firmware_vars is not None:
        shutil.copyfile(OVMF_VARS, firmware_vars)
        firmware_vars.chmod(0o600)
