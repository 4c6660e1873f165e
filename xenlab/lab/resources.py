"""What a lab costs this machine: memory it needs before it starts, memory it uses running.

Admission: a lab whose machines would not fit in the memory the kernel reports available
is refused before anything starts, with how much it needs; several labs then run side by
side only while they fit. QEMU (TCG or KVM) touches all of a guest's RAM that the guest
uses, and Xen's dom0 and a busy guest use most of it, so a machine is counted whole plus
QEMU's own overhead.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import XenlabError
from ..plan import LabPlan

QEMU_OVERHEAD_MIB = 96  # per machine: QEMU itself, TCG translation buffers, device state
HOST_RESERVE_MIB = 512  # left to this machine's own processes


def needed_mib(plan: LabPlan) -> int:
    return sum(m.memory_mib + QEMU_OVERHEAD_MIB for m in plan.machines)


def needed_vcpus(plan: LabPlan) -> int:
    return sum(m.vcpus for m in plan.machines)


def available_cores() -> int:
    """The CPUs this process may run on (its affinity, not the machine's whole count)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def available_mib(meminfo: Path = Path("/proc/meminfo")) -> int | None:
    """MemAvailable, in MiB (None where the kernel does not say)."""
    try:
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) // 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def admission_problem(plan: LabPlan, name: str, available: int | None) -> str | None:
    """Why lab `name` must not start here (None if it fits, or if nothing is known)."""
    if available is None or os.environ.get("XENLAB_ADMISSION", "1") == "0":
        return None
    needed = needed_mib(plan)
    if needed + HOST_RESERVE_MIB <= available:
        return None
    return (f"lab {name} needs about {needed} MiB of memory ({len(plan.machines)} machines: their RAM plus "
            f"{QEMU_OVERHEAD_MIB} MiB each for QEMU) and {HOST_RESERVE_MIB} MiB left to this machine, but only "
            f"{available} MiB is available; stop another lab (`xenlab status`, `xenlab down LAB`), give the "
            f"hosts less memory_mib, or set XENLAB_ADMISSION=0 to start it anyway")


def check_fits(plan: LabPlan, name: str) -> None:
    problem = admission_problem(plan, name, available_mib())
    if problem:
        raise XenlabError(problem)


def process_rss_mib(pid: int | None) -> float | None:
    """Resident memory of a running process, in MiB."""
    if not pid:
        return None
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        return None
    return None
