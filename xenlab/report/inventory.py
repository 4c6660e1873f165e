"""What a host is made of, asked from the host itself over SSH, for qualification reports.

`collect_inventory` runs real commands (`xl info`, `/proc/cpuinfo`, `ip -j link`,
`lsblk -J`, `uname -r`, DMI files, `systemd-detect-virt`) and parses their output with the
small pure functions below. A command that fails leaves its fields empty: an inventory
of a half-broken host is still worth printing, and the qualification checks then say
"not measured" instead of guessing.
"""

from __future__ import annotations

import json
from typing import Protocol

from ..results import HostInventory

COMMAND_TIMEOUT = 30.0  # `xl info` alone takes about 2 s under TCG
DMI_FIELDS = ("sys_vendor", "product_name", "bios_vendor", "bios_version", "bios_date")
TRANSIENT_NIC_PREFIXES = ("vif", "tap", "lo")  # guest and loopback interfaces come and go


class CommandOutcome(Protocol):
    status: int
    stdout: str


class InventoryTarget(Protocol):
    """What collect_inventory needs of a host: its name and a way to run a command."""

    name: str

    def run(self, command: str, timeout: float = ...) -> CommandOutcome: ...


def _ask(host: InventoryTarget, command: str, accept_failure: bool = False) -> str:
    try:
        result = host.run(command, timeout=COMMAND_TIMEOUT)
    except Exception:  # noqa: BLE001 - an unreachable host gives an empty inventory, not a crash
        return ""
    if result.status != 0 and not accept_failure:
        return ""
    return result.stdout


def parse_xl_info(text: str) -> dict[str, str]:
    """`key : value` lines of `xl info`."""
    info = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            info[key.strip()] = value.strip()
    return info


def xen_version_of(info: dict[str, str]) -> str:
    major, minor = info.get("xen_major", ""), info.get("xen_minor", "")
    if not major:
        return info.get("xen_version", "")
    return f"{major}.{minor}{info.get('xen_extra', '')}"


def parse_cpuinfo(text: str) -> tuple[str, list[str], int]:
    """(model name, flags of the first CPU, number of CPUs dom0 sees)."""
    model, flags, count = "", [], 0
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "processor":
            count += 1
        elif key == "model name" and not model:
            model = value.strip()
        elif key == "flags" and not flags:
            flags = value.split()
    return model, flags, count


def parse_ip_links(text: str) -> list[str]:
    """`ip -j link` -> 'eth0 02:58:.. UP mtu 1500' for each lasting interface."""
    try:
        links = json.loads(text or "[]")
    except ValueError:
        return []
    nics = []
    for link in links:
        name = link.get("ifname", "")
        if not name or name.startswith(TRANSIENT_NIC_PREFIXES):
            continue
        parts = [name, link.get("address", ""), link.get("operstate", ""), f"mtu {link.get('mtu', '?')}"]
        if link.get("master"):
            parts.append(f"in {link['master']}")
        nics.append(" ".join(p for p in parts if p))
    return nics


def _size(value) -> str:
    try:
        size = float(value)
    except (TypeError, ValueError):
        return str(value or "")
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return ""


def parse_lsblk(text: str) -> list[str]:
    """`lsblk -J -b -d -o NAME,SIZE,TYPE,MODEL,ROTA` -> 'vda 20.0 GiB QEMU HARDDISK (rotational)'."""
    try:
        devices = json.loads(text or "{}").get("blockdevices", [])
    except (ValueError, AttributeError):
        return []
    disks = []
    for dev in devices:
        if dev.get("type") != "disk":
            continue
        parts = [dev.get("name", "?"), _size(dev.get("size")), (dev.get("model") or "").strip()]
        rota = dev.get("rota")
        if rota in (True, "1", 1):
            parts.append("(rotational)")
        disks.append(" ".join(p for p in parts if p))
    return disks


def parse_dmi(text: str) -> str:
    """`grep -H . /sys/class/dmi/id/...` -> 'QEMU Standard PC; BIOS SeaBIOS 1.16 (04/01/2014)'."""
    found = {}
    for line in text.splitlines():
        path, sep, value = line.partition(":")
        if sep:
            found[path.rsplit("/", 1)[-1]] = value.strip()
    machine = " ".join(v for v in (found.get("sys_vendor"), found.get("product_name")) if v)
    bios = " ".join(v for v in (found.get("bios_vendor"), found.get("bios_version")) if v)
    if found.get("bios_date"):
        bios += f" ({found['bios_date']})"
    return "; ".join(p for p in (machine, f"BIOS {bios}" if bios else "") if p)


def parse_detect_virt(text: str) -> bool | None:
    """systemd-detect-virt prints 'none' on bare metal (a Xen dom0 counts as bare metal)."""
    word = text.strip().splitlines()[0].strip() if text.strip() else ""
    if not word:
        return None
    return word != "none"


def collect_inventory(host: InventoryTarget, accel: str) -> HostInventory:
    """Ask `host` what it is made of; fields whose command failed stay empty."""
    info = parse_xl_info(_ask(host, "xl info"))
    model, flags, cpus_seen = parse_cpuinfo(_ask(host, "cat /proc/cpuinfo"))
    dmi_files = " ".join(f"/sys/class/dmi/id/{f}" for f in DMI_FIELDS)
    memory = info.get("total_memory", "")
    nr_cpus = info.get("nr_cpus", "")
    return HostInventory(
        name=host.name,
        cpu_model=model,
        cpu_flags=flags,
        cpus=int(nr_cpus) if nr_cpus.isdigit() else (cpus_seen or None),
        memory_mib=int(memory) if memory.isdigit() else None,
        nics=parse_ip_links(_ask(host, "ip -j link")),
        disks=parse_lsblk(_ask(host, "lsblk -J -b -d -o NAME,SIZE,TYPE,MODEL,ROTA")),
        firmware=parse_dmi(_ask(host, f"grep -s -H . {dmi_files}", accept_failure=True)),
        xen_version=xen_version_of(info),
        dom0_kernel=_ask(host, "uname -r").strip(),
        accel=accel,
        nested=parse_detect_virt(_ask(host, "systemd-detect-virt", accept_failure=True)),
        virt_caps=info.get("virt_caps", "").split(),
    )
