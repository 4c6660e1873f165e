"""What a host is made of, asked from the host itself over SSH, for qualification reports.

`collect_inventory` runs real commands (`xl info`, `/proc/cpuinfo`, `ip -j link`,
`lsblk -J`, `uname -r`, DMI files, `systemd-detect-virt`, `ethtool -i`, `xl dmesg`) and parses their output with the
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
    """`lsblk -J -b -d -o NAME,SIZE,TYPE,MODEL,ROTA,TRAN` -> 'sda 20.0 GiB QEMU HARDDISK (rotational) bus sata'."""
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
        if dev.get("tran"):  # sata, nvme, usb...; empty for virtio and Xen block devices
            parts.append(f"bus {dev['tran']}")
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


def parse_microcode(text: str) -> str:
    """The first `microcode : 0x...` of /proc/cpuinfo ('' when the CPU reports none, as QEMU's do)."""
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() == "microcode":
            return value.strip()
    return ""


NIC_SCRIPT = ("for d in /sys/class/net/*; do n=${d##*/}; [ -e $d/device ] || continue; echo \"== $n\"; "
              "ethtool -i $n 2>/dev/null; echo \"speed: $(cat $d/speed 2>/dev/null)\"; "
              "echo \"carrier: $(cat $d/carrier 2>/dev/null)\"; echo \"mtu: $(cat $d/mtu)\"; done")


def parse_nic_details(text: str) -> list[str]:
    """NIC_SCRIPT's output (`ethtool -i` and /sys/class/net per physical NIC) ->
    'eth0: driver e1000e 6.1.0-28-amd64, firmware 0.13-4, bus 0000:00:02.0, link up 1000 Mb/s, mtu 1500'."""
    nics: list[str] = []
    name, fields = "", {}

    def flush() -> None:
        if not name:
            return
        driver = " ".join(v for v in (fields.get("driver"), fields.get("version")) if v) or "driver unknown"
        parts = [f"driver {driver}" if fields.get("driver") else driver,
                 f"firmware {fields.get('firmware-version') or 'none'}"]
        if fields.get("bus-info"):
            parts.append(f"bus {fields['bus-info']}")
        carrier = {"1": "up", "0": "down"}.get(fields.get("carrier", ""), "unknown")
        speed = fields.get("speed", "")
        link = f"link {carrier}" + (f" {speed} Mb/s" if speed.lstrip("-").isdigit() and int(speed) > 0 else "")
        parts.append(link)
        if fields.get("mtu"):
            parts.append(f"mtu {fields['mtu']}")
        nics.append(f"{name}: " + ", ".join(parts))

    for line in text.splitlines():
        if line.startswith("== "):
            flush()
            name, fields = line[3:].strip(), {}
            continue
        key, sep, value = line.partition(":")
        if sep:
            fields[key.strip()] = value.strip()
    flush()
    return nics


def parse_iommu(xl_dmesg: str, virt_caps: list[str]) -> str:
    """'enabled' / 'disabled' as Xen says it at boot ('I/O virtualisation ...'), else from virt_caps."""
    for line in xl_dmesg.splitlines():
        lowered = line.lower()
        if "i/o virtualisation" in lowered:
            return "enabled" if "enabled" in lowered else "disabled"
    if any(cap.endswith("_directio") for cap in virt_caps):
        return "enabled"
    return "disabled" if xl_dmesg.strip() else ""


def collect_inventory(host: InventoryTarget, accel: str) -> HostInventory:
    """Ask `host` what it is made of; fields whose command failed stay empty."""
    info = parse_xl_info(_ask(host, "xl info"))
    cpuinfo = _ask(host, "cat /proc/cpuinfo")
    model, flags, cpus_seen = parse_cpuinfo(cpuinfo)
    virt_caps = info.get("virt_caps", "").split()
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
        disks=parse_lsblk(_ask(host, "lsblk -J -b -d -o NAME,SIZE,TYPE,MODEL,ROTA,TRAN")),
        firmware=parse_dmi(_ask(host, f"grep -s -H . {dmi_files}", accept_failure=True)),
        xen_version=xen_version_of(info),
        dom0_kernel=_ask(host, "uname -r").strip(),
        accel=accel,
        nested=parse_detect_virt(_ask(host, "systemd-detect-virt", accept_failure=True)),
        virt_caps=virt_caps,
        cpu_microcode=parse_microcode(cpuinfo),
        nic_details=parse_nic_details(_ask(host, NIC_SCRIPT)),
        xen_caps=info.get("xen_caps", ""),
        xen_commandline=info.get("xen_commandline", ""),
        xen_changeset=info.get("xen_changeset", ""),
        dom0_mode=_ask(host, "cat /sys/hypervisor/guest_type", accept_failure=True).strip(),
        iommu=parse_iommu(_ask(host, "xl dmesg | grep -i -E 'I/O virtuali|IOMMU|AMD-Vi|VT-d' | head -20"), virt_caps),
    )
