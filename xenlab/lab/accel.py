"""Choosing between KVM and TCG: KVM only where nested virtualization really works.

/dev/kvm can exist without the CPU exposing vmx/svm (a PVM-style module); Xen then dies
under KVM with an emulation failure. So KVM needs the flag *and* a working probe.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from ..errors import XenlabError

# Under TCG: qemu64 (Xen's PV dom0 crashes early with `max`). A lab that runs PVH or HVM
# guests adds SVM, as Xen's own upstream CI boots it: Xen then enables SVM with shadow
# paging. Only such labs get it: measured here (2026-12-02), a PVH guest under nested SVM
# took 102 s to create and 231 s to its first heartbeat and then starved its 1-vCPU dom0
# until SSH failed, so PV-only labs (whose scenario bounds were measured on qemu64) keep
# the plain CPU.
TCG_CPU = "qemu64"
TCG_NESTED_CPU = "qemu64,+svm"
KVM_CPU = "host"


@dataclass(frozen=True)
class AccelChoice:
    accel: str  # "kvm" or "tcg"
    cpu: str
    reason: str


def cpu_virt_flags(cpuinfo: str) -> set[str]:
    flags: set[str] = set()
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            flags.update(line.split(":", 1)[1].split())
    return flags & {"vmx", "svm"}


def choose_accel(requested: str, virt_flags: set[str], kvm_usable: bool | None,
                 nested_hvm: bool = False) -> AccelChoice:
    """Pure decision: `requested` is auto|kvm|tcg; `kvm_usable` None means not probed;
    `nested_hvm`: the lab runs PVH or HVM guests (under TCG the CPU then offers SVM)."""
    tcg_cpu = TCG_NESTED_CPU if nested_hvm else TCG_CPU
    if requested == "tcg":
        return AccelChoice("tcg", tcg_cpu, "TCG requested")
    if not virt_flags:
        if requested == "kvm":
            raise XenlabError("KVM requested, but the CPU shows no vmx/svm flag: nested Xen cannot run under KVM here; use accel: tcg or auto")
        return AccelChoice("tcg", tcg_cpu, "no vmx/svm CPU flag: nested virtualization unavailable, using TCG")
    if not kvm_usable:
        if requested == "kvm":
            raise XenlabError("KVM requested, but /dev/kvm is missing or a KVM probe failed")
        return AccelChoice("tcg", tcg_cpu, "vmx/svm present but the KVM probe failed, using TCG")
    return AccelChoice("kvm", KVM_CPU, f"KVM with {'/'.join(sorted(virt_flags))}")


def probe_kvm(qemu: str = "qemu-system-x86_64") -> bool:
    """Does a KVM machine start at all? (Catches /dev/kvm nodes that cannot run guests.)"""
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return False
    try:
        proc = subprocess.run(  # noqa: PLW1510 - the exit status is the probe's answer
            [qemu, "-accel", "kvm", "-cpu", "host", "-machine", "q35", "-nodefaults", "-display", "none",
             "-no-user-config", "-m", "64", "-S", "-qmp", "stdio"],
            input=b'{"execute":"qmp_capabilities"}\n{"execute":"quit"}\n',
            capture_output=True, timeout=20,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return proc.returncode == 0


def detect_accel(requested: str, nested_hvm: bool = False) -> AccelChoice:
    flags = cpu_virt_flags(Path("/proc/cpuinfo").read_text())
    probed = probe_kvm() if flags and requested != "tcg" else None
    return choose_accel(requested, flags, probed, nested_hvm)


def guest_types_under(accel: str, cpu: str) -> str:
    """What nested Xen hosts can run under this accelerator and CPU model (for `doctor`);
    a host's image must also declare a type (`guest_types` in its recipe)."""
    if accel == "kvm":
        return "pv, pvh, hvm (nested hardware virtualization through KVM)"
    if "+svm" in cpu.split(",") or "+vmx" in cpu.split(","):
        return f"pv, pvh, hvm (TCG CPU {cpu}: Xen enables SVM with shadow paging, no HAP)"
    return (f"pv (TCG CPU {cpu}); a lab with guest_types pvh or hvm boots {TCG_NESTED_CPU} "
            "for them (much slower under TCG)")
