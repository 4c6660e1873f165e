"""Lab files (`labs/*.yaml`) as validated, typed models.

A lab file names hosts, networks and a services node; everything else has a default, so
a two-host pool is a few lines. Unknown keys are errors. `load_lab` reports every problem
with the file and line it comes from, before anything is started.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import re
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from .errors import SpecError
from .hardware import Hardware, HardwareSpec, qemu_cpu_models, qemu_devices, qemu_problems, resolve
from .recipe_facts import (
    DEFAULT_GUEST_TYPES,
    HOST_BOOT,
    SERVICES_BOOT,
    GuestType,
    image_boots,
    image_guest_types,
)
from .validation import StrictModel, validate_document
from .xen_spec import PACKAGE_PATTERN, ProvisionSpec, XenSpec, dom0_mode, merged_xen
from .xen_spec import lab_file_problems as xen_file_problems
from .xen_spec import lab_problems as xen_lab_problems
from .yamlfile import LocatedDocument, load_located, parse_located

# The scripts dom0 runs to attach a guest's disk and NIC (xenlab/toolstack/hotplug.py)
HotplugKind = Literal["debian", "lean"]
# How `xl migrate` carries a guest between members (xenlab/toolstack/transport.py)
MigrationTransport = Literal["ssh", "tcp"]
SR_PATH = "/srv/xenlab"  # the shared SR: the services node's NFS export, mounted at the same path on hosts
NAME_PATTERN = r"^[a-z][a-z0-9-]{0,23}$"
Name = Annotated[str, Field(pattern=NAME_PATTERN)]
# Every machine's first NIC is QEMU user-mode networking on this subnet (SSH port forward).
MANAGEMENT_SUBNET = ipaddress.IPv4Network("10.0.2.0/24")
def lab_number(lab_name: str) -> int:
    """A stable 12-bit number for a lab name (0..4095)."""
    return int.from_bytes(hashlib.sha256(lab_name.encode()).digest()[:2], "big") & 0x0FFF


def default_subnet(lab_name: str, network_index: int) -> ipaddress.IPv4Network:
    """10.(64 + n/32).((n%32)*8 + i).0/24: unique per (lab number, network index < 8)."""
    n = lab_number(lab_name)
    return ipaddress.IPv4Network(f"10.{64 + n // 32}.{(n % 32) * 8 + network_index}.0/24")


class NetworkSpec(StrictModel):
    """A lab network: one vde_switch; hosts on it share a subnet."""

    subnet: ipaddress.IPv4Network | None = Field(
        None, description="IPv4 /24 or larger; derived from the lab name when omitted"
    )

    @field_validator("subnet", mode="before")
    @classmethod
    def _parse(cls, value: Any) -> Any:
        if value is None or isinstance(value, ipaddress.IPv4Network):
            return value
        if not isinstance(value, str):
            raise ValueError(f"{value!r} is not a subnet: write one like 192.168.50.0/24")  # noqa: TRY004 (pydantic reports ValueError)
        try:
            return ipaddress.IPv4Network(value)
        except ValueError as exc:
            if "host bits set" in str(exc):
                network = ipaddress.IPv4Network(value, strict=False)
                raise ValueError(f"{value} has host bits set: write {network}") from None
            raise ValueError(f"{value!r} is not an IPv4 subnet: write one like 192.168.50.0/24") from None

    @field_validator("subnet")
    @classmethod
    def _private(cls, value: ipaddress.IPv4Network | None) -> ipaddress.IPv4Network | None:
        if value is not None:
            if not value.is_private or value.is_loopback or value.is_link_local or value.is_multicast:
                raise ValueError(f"{value} is not a private range: a lab subnet is RFC 1918, e.g. 192.168.50.0/24")
            if value.prefixlen > 24:
                raise ValueError(f"{value} is smaller than a /24: write a /24 or larger")
            if value.overlaps(MANAGEMENT_SUBNET):
                raise ValueError(f"{value} overlaps {MANAGEMENT_SUBNET}, the management network of every machine: "
                                 "choose another range, e.g. 192.168.50.0/24")
        return value


class DiskSpec(StrictModel):
    """An extra, empty data disk (the root disk is the image's overlay)."""

    name: Name
    size_gib: int = Field(ge=1, le=512)


HOSTNAME_PATTERN = r"^[A-Za-z0-9]([A-Za-z0-9.:-]{0,252})$"  # a DNS name, IPv4 or IPv6 address
ENV_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]{0,63}$"
BmcKind = Literal["ipmi"]


def _loopback(host: str) -> bool:
    """Is `host` this machine (a 127/8 address, ::1 or localhost)?"""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _ipv4(value: str) -> str:
    try:
        return str(ipaddress.IPv4Address(value))
    except ValueError:
        raise ValueError(f"{value!r} is not an IPv4 address: write one like 192.168.50.11") from None


class SshSpec(StrictModel):
    """How xenlab reaches a static host's dom0 (or its services node) over SSH."""

    host: str = Field(pattern=HOSTNAME_PATTERN, description="address or DNS name of its SSH server")
    port: int = Field(22, ge=1, le=65535)
    user: str = Field("root", pattern=r"^[a-z_][a-z0-9_-]{0,31}$")
    key_file: str = Field(min_length=1, max_length=400, description="private key (relative to the lab file)")


class SecretSource(StrictModel):
    """Where a password is read when it is needed: a 0600 file or an environment variable
    named here, never the lab file itself."""

    password_file: str | None = Field(None, min_length=1, max_length=400,
                                      description="a file holding the password on its first line (mode 0600)")
    password_env: str | None = Field(None, pattern=ENV_NAME_PATTERN,
                                     description="an environment variable holding the password")
    secret_of: ClassVar[str] = "a"

    @model_validator(mode="before")
    @classmethod
    def _no_secret_here(cls, data: Any) -> Any:
        if isinstance(data, dict) and any(k in data for k in ("password", "pass", "secret")):
            raise ValueError(f"{cls.secret_of} password is never written in a lab file: put it in a 0600 file named "
                             "by password_file, or in an environment variable named by password_env")
        return data

    @field_validator("password_env")
    @classmethod
    def _one_source(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None and info.data.get("password_file") is not None:
            raise ValueError("give password_file or password_env, not both")
        return value


class IpmiSpec(SecretSource):
    """A static host's BMC (IPMI over LAN)."""

    secret_of: ClassVar[str] = "a BMC"
    address: str = Field(pattern=HOSTNAME_PATTERN)
    port: int = Field(623, ge=1, le=65535)
    user: str = Field(min_length=1, max_length=16, description="IPMI user (at most 16 bytes)")


class XapiLoginSpec(SecretSource):
    """How xenlab logs in to the xapi of a static lab's hosts (XCP-ng, XenServer)."""

    secret_of: ClassVar[str] = "xapi's"
    user: str = Field("root", pattern=r"^[A-Za-z_][A-Za-z0-9_.@-]{0,63}$")
    scheme: Literal["https", "http"] = Field("https", description="http only for endpoints on 127.0.0.1 (a "
                                             "simulator, an SSH tunnel): it sends the password in clear")
    ca_file: str | None = Field(None, min_length=1, max_length=400,
                                description="PEM certificates the hosts' xapi certificates are checked against "
                                            "(XCP-ng's are self-signed: collect each host's); default: the system's")


class ApiEndpointSpec(StrictModel):
    """Where xenlab reaches a static host's xapi when not at its pool address (a tunnel, a simulator)."""

    host: str = Field(pattern=HOSTNAME_PATTERN)
    port: int | None = Field(None, ge=1, le=65535, description="default 443 (https) or 80 (http)")


class HostSpec(StrictModel):
    """One hypervisor host: a nested one in its own QEMU process, or a static (real) one by address."""

    image: Name = "debian-xen"
    role: Literal["xen"] = "xen"
    vcpus: int = Field(1, ge=1, le=16)
    memory_mib: int = Field(2048, ge=512, le=65536)
    dom0_memory_mib: int = Field(1024, ge=256)
    nics: list[Name] | None = Field(None, description="networks in NIC order; default: the lab's first network")
    disks: list[DiskSpec] = Field(default_factory=list)
    bmc: BmcKind | None = Field(None, description="ipmi: a virtual BMC on 127.0.0.1 powers this QEMU host")
    ssh: SshSpec | None = Field(None, description="static labs: how to reach the host's dom0")
    address: str | None = Field(None, description="static labs: the host's address on the pool network")
    ipmi: IpmiSpec | None = Field(None, description="static labs: the host's BMC")
    api: ApiEndpointSpec | None = Field(None, description="static labs with toolstack xapi: where its xapi answers, "
                                        "if not at `address`")
    hardware: HardwareSpec | None = Field(None, description="this host's virtual hardware, over the lab's")
    xen: XenSpec | None = Field(None, description="this host's Xen under test, key by key over the lab's `xen:`")

    @field_validator("address")
    @classmethod
    def _address(cls, value: str | None) -> str | None:
        return None if value is None else _ipv4(value)

    @field_validator("nics")
    @classmethod
    def _some_nic(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and not value:
            raise ValueError("an empty list leaves the host without a network: name at least one, "
                             "or leave nics out for the lab's first network")
        return value

    @field_validator("disks")
    @classmethod
    def _distinct_disks(cls, value: list[DiskSpec]) -> list[DiskSpec]:
        names = [d.name for d in value]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"disk name {', '.join(map(repr, twice))} is used twice: give each disk its own name")
        return value

    @field_validator("dom0_memory_mib")
    @classmethod
    def _dom0_fits(cls, value: int, info: ValidationInfo) -> int:
        memory = info.data.get("memory_mib")
        if memory is not None and value > memory - 256:
            raise ValueError(
                f"must leave at least 256 MiB of memory_mib ({memory}) to Xen and guests"
            )
        return value


class ServicesSpec(StrictModel):
    """The lab's services node: plain Debian serving NFS (and later heartbeat collection)."""

    name: Name = "services"
    image: Name = "services"
    vcpus: int = Field(1, ge=1, le=8)
    memory_mib: int = Field(512, ge=256, le=16384)
    nics: list[Name] | None = Field(None, description="networks in NIC order; default: the lab's first network")
    nfs_export: str = Field(SR_PATH, max_length=200, description="an absolute path on the services node")
    ssh: SshSpec | None = Field(None, description="static labs: how to reach the services node")
    address: str | None = Field(None, description="static labs: the NFS server's address on the pool network")

    @field_validator("address")
    @classmethod
    def _address(cls, value: str | None) -> str | None:
        return None if value is None else _ipv4(value)

    @field_validator("nics")
    @classmethod
    def _some_nic(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and not value:
            raise ValueError("an empty list leaves the services node without a network: name at least one, "
                             "or leave nics out for the lab's first network")
        return value

    @field_validator("nfs_export")
    @classmethod
    def _plain_path(cls, value: str) -> str:
        if not re.fullmatch(r"/[A-Za-z0-9/_.-]+", value):
            raise ValueError(f"{value!r} is not a plain absolute path: write one like /srv/xenlab "
                             "(letters, digits, '/', '_', '.', '-')")
        parts = value.split("/")[1:]
        if any(p in ("", ".", "..") for p in parts):
            raise ValueError(f"{value!r} has an empty, '.' or '..' part: write a plain path such as /srv/xenlab")
        if value.rstrip("/") in ("/", "/etc", "/proc", "/sys", "/dev", "/boot", "/root", "/usr", "/bin", "/lib"):
            raise ValueError(f"{value!r} is a system directory: export a directory of its own, e.g. /srv/xenlab")
        return value


class SimSpec(StrictModel):
    """How the simulated pool of a `backend: sim` lab behaves (see xenlab/sim/README.md)."""

    time_scale: float = Field(0.05, gt=0, le=1, description="xapi operations (join, start, migrate) take their "
                              "modelled duration times this; HA timeouts and heartbeats are not scaled")
    guest_boot_s: float = Field(0.5, ge=0, le=600, description="from VM start to the guest's first heartbeat")
    switchover_pause_s: float = Field(0.2, ge=0, le=60, description="a live-migrated guest is paused this long")


def _empty_means_default(schema: dict[str, Any]) -> None:
    """`h1:` with nothing under it is a host with all defaults: the JSON Schema says so too."""
    schema["patternProperties"] = {pattern: {"anyOf": [value, {"type": "null"}]}
                                   for pattern, value in schema["patternProperties"].items()}
    schema["additionalProperties"] = False  # a key that is not a name is refused, as the model refuses it


class LabSpec(StrictModel):
    """A whole lab: validated as a unit so cross-references (nics -> networks) are checked."""

    name: Name
    description: str = ""
    backend: Literal["qemu", "sim", "static"] = Field(
        "qemu", description="qemu: nested Xen hosts; sim: simulated xapi hosts in the xenlab process (no QEMU); "
                            "static: hosts that exist already (real servers), reached by address")
    toolstack: Literal["xl", "xapi"] | None = Field(None, description="static labs: what manages the hosts "
                                                    "(xl: Debian's Xen; xapi: XCP-ng/XenServer); default xl")
    known_hosts: str | None = Field(None, max_length=400, description="static labs: an OpenSSH known_hosts file "
                                    "pinning every host's SSH key (relative to the lab file)")
    xapi: XapiLoginSpec | None = Field(None, description="static labs with toolstack xapi: how xenlab logs in")
    bmc: BmcKind | None = Field(None, description="ipmi: every QEMU host gets a virtual BMC on 127.0.0.1")
    sim: SimSpec | None = Field(None, description="the simulated pool's model (backend: sim only)")
    accel: Literal["auto", "kvm", "tcg"] = "auto"
    hardware: HardwareSpec | None = Field(None, description="the hosts' virtual hardware (NIC model, disk bus, "
                                          "firmware, CPU model); a host's own `hardware:` overrides it")
    guest_types: list[GuestType] = Field(
        default_factory=lambda: list(DEFAULT_GUEST_TYPES),
        description="guest types the lab runs; pvh or hvm boot the hosts with nested SVM under TCG "
                    "(measured much slower there: see labs/xen-pool2-guests.yaml), and every host image "
                    "must declare them")
    networks: dict[Name, NetworkSpec] = Field(default_factory=lambda: {"lab": NetworkSpec()}, min_length=1,
                                              json_schema_extra=_empty_means_default)
    hosts: dict[Name, HostSpec] = Field(min_length=1, max_length=32, json_schema_extra=_empty_means_default)
    services: ServicesSpec | None = Field(default_factory=ServicesSpec)
    xen: XenSpec | None = Field(None, description="the Xen under test on every host: a hypervisor build, tools or "
                                ".debs, command lines, dom0 (see docs/your-own-xen.md); a host's `xen:` overrides it")
    packages: list[Annotated[str, Field(pattern=PACKAGE_PATTERN)]] = Field(
        default_factory=list, max_length=100, description="extra Debian packages on every host (an image layer)")
    provision: ProvisionSpec | None = Field(None, description="files and first-boot commands for every host")
    hotplug: HotplugKind = Field("debian", description="xl labs: the scripts dom0 runs to attach a guest's disk and "
                                 "NIC (at create, and in a migration's blackout): debian, Debian's own "
                                 "/etc/xen/scripts; lean, xenlab's short ones (xenlab/toolstack/hotplug.py says "
                                 "what they leave out)")
    migration_transport: MigrationTransport = Field(
        "ssh", description="xl labs: how `xl migrate` carries a guest: ssh, xl's own way through the pool's SSH "
        "trust; tcp, in the clear over the lab network to a socket on each member that accepts only the pool's "
        "members (faster under TCG; xenlab/toolstack/transport.py)")

    @field_validator("hosts", mode="before")
    @classmethod
    def _empty_host_is_default(cls, value: Any) -> Any:
        # `h1:` with nothing under it means "a host with all defaults".
        if isinstance(value, dict):
            return {k: ({} if v is None else v) for k, v in value.items()}
        return value

    @field_validator("networks", mode="before")
    @classmethod
    def _empty_network_is_default(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {k: ({} if v is None else v) for k, v in value.items()}
        return value

    @field_validator("guest_types")
    @classmethod
    def _some_guest_type(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("an empty list runs no guests: name at least pv (the default)")
        if len(set(value)) != len(value):
            raise ValueError("a guest type is listed twice")
        return value

    @property
    def nested_hvm(self) -> bool:
        """Whether the hosts need hardware virtualization for their guests (PVH or HVM)."""
        return any(t != "pv" for t in self.guest_types) or any(
            dom0_mode(self.xen_of(h)) == "pvh" for h in self.hosts)

    def choices_under_test(self) -> dict[str, str]:
        """The lab file's choices that change what an xl pool runs (results record them)."""
        if self.backend == "sim" or self.toolstack == "xapi":
            return {}
        return {"hotplug": self.hotplug, "migration_transport": self.migration_transport}

    def xen_of(self, host: str) -> XenSpec | None:
        """A host's Xen under test: its own `xen:` over the lab's (None: the image's own)."""
        return merged_xen(self.xen, self.hosts[host].xen)

    def cross_check(self) -> list[tuple[tuple[Any, ...], str]]:
        """Problems between sections (nic -> network, name clashes), each with its YAML path."""
        problems: list[tuple[tuple[Any, ...], str]] = []
        machines: list[tuple[tuple[Any, ...], str, list[str]]] = [
            (("hosts", n), n, self.nics_of(h)) for n, h in self.hosts.items()
        ]
        if self.services is not None:
            if self.services.name in self.hosts:
                problems.append((("services", "name"), f"services name {self.services.name!r} is also a host name"))
            machines.append((("services",), self.services.name, self.nics_of(self.services)))
        known = ", ".join(sorted(self.networks)) or "none"
        for loc, machine, nics in machines:
            seen: set[str] = set()
            for index, nic in enumerate(nics):
                if nic not in self.networks:
                    problems.append((loc + ("nics", index), f"{machine}: nic {nic!r} is not a network of this lab (networks: {known})"))
                if nic in seen:
                    problems.append((loc + ("nics", index), f"{machine}: network {nic!r} is listed twice"))
                seen.add(nic)
        named = [(name, n.subnet) for name, n in self.networks.items() if n.subnet is not None]
        for i, (name_a, a) in enumerate(named):
            for name_b, b in named[i + 1 :]:
                if a.overlaps(b):
                    problems.append((("networks", name_b, "subnet"), f"subnet {b} of {name_b!r} overlaps {a} of {name_a!r}"))
        defaults = [(name, default_subnet(self.name, i)) for i, (name, n) in enumerate(self.networks.items())
                    if n.subnet is None]
        for name_a, a in named:
            for name_b, b in defaults:
                if a.overlaps(b):
                    problems.append((("networks", name_a, "subnet"),
                                     (f"subnet {a} of {name_a!r} overlaps {b}, the default subnet of {name_b!r}: "
                                      f"choose another range, or give {name_b!r} a subnet too")))
        if len(self.networks) > 8:
            problems.append((("networks",), "at most 8 networks per lab"))
        if self.sim is not None and self.backend != "sim":
            problems.append((("sim",), "a sim section needs `backend: sim`"))
        if self.backend == "sim" and len({(h.memory_mib, h.dom0_memory_mib) for h in self.hosts.values()}) > 1:
            problems.append((("hosts",), "the hosts of a sim lab all have the same memory_mib and dom0_memory_mib"))
        problems += self.static_problems() if self.backend == "static" else self._not_static_problems()
        if self.backend == "sim" or self.toolstack == "xapi":  # xapi attaches and migrates guests its own way
            for key in ("hotplug", "migration_transport"):
                if key in self.model_fields_set and getattr(self, key) != self.model_fields[key].default:
                    why = f"{key}: xapi attaches and migrates guests its own way; the option is for xl labs"
                    problems.append(((key,), why))
        return problems + xen_lab_problems(self)

    def bmc_of(self, host: str) -> str | None:
        """The virtual BMC a QEMU host gets (its own `bmc`, else the lab's), or None."""
        if self.backend != "qemu" or host not in self.hosts:
            return None
        return self.hosts[host].bmc or self.bmc

    def hardware_of(self, host: str) -> Hardware:
        """A host's virtual hardware: its own `hardware:` over the lab's, today's machine under both."""
        return resolve(self.hardware, self.hosts[host].hardware)

    def hardware_problems(self, devices: frozenset[str] | None,
                          cpus: frozenset[str] | None) -> list[tuple[tuple[Any, ...], str]]:
        """Hardware this QEMU cannot provide (`hardware.qemu_devices`, `qemu_cpu_models`), by YAML path."""
        if self.backend != "qemu":
            return []
        sections: list[tuple[tuple[Any, ...], HardwareSpec | None]] = [(("hardware",), self.hardware)]
        sections += [(("hosts", n, "hardware"), h.hardware) for n, h in self.hosts.items()]
        return [(loc + (key,), f"{'.'.join(map(str, loc))}.{message}")
                for loc, section in sections if section is not None
                for key, message in qemu_problems(section, devices, cpus)]

    def _not_static_problems(self) -> list[tuple[tuple[Any, ...], str]]:
        """Keys only a static lab has, written in a qemu or sim lab file."""
        problems: list[tuple[tuple[Any, ...], str]] = []
        hint = f"only the hosts of a `backend: static` lab are reached by address (this is a {self.backend} lab)"
        for key in ("toolstack", "known_hosts", "xapi"):
            if getattr(self, key) is not None:
                problems.append(((key,), f"{key}: {hint}"))
        for name, host in self.hosts.items():
            for key in ("ssh", "address", "ipmi", "api"):
                if getattr(host, key) is not None:
                    problems.append((("hosts", name, key), f"hosts.{name}.{key}: {hint}"))
            if host.bmc is not None and self.backend != "qemu":
                problems.append((("hosts", name, "bmc"), f"hosts.{name}.bmc: virtual BMCs are for qemu labs"))
        if self.bmc is not None and self.backend != "qemu":
            problems.append((("bmc",), "bmc: virtual BMCs are for qemu labs"))
        if self.backend != "qemu":
            if self.hardware is not None:
                problems.append((("hardware",), "hardware: virtual hardware is chosen for qemu labs only"))
            problems += [(("hosts", n, "hardware"), f"hosts.{n}.hardware: virtual hardware is chosen for qemu labs only")
                         for n, h in self.hosts.items() if h.hardware is not None]
        if self.services is not None:
            for key in ("ssh", "address"):
                if getattr(self.services, key) is not None:
                    problems.append((("services", key), f"services.{key}: {hint}"))
        return problems

    @property
    def static_toolstack(self) -> str:
        return self.toolstack or "xl"

    def static_problems(self) -> list[tuple[tuple[Any, ...], str]]:
        """What a static lab file must say, and what it cannot ask for (xenlab boots nothing)."""
        problems: list[tuple[tuple[Any, ...], str]] = []
        booted = "xenlab does not boot the hosts of a static lab: remove it"
        for key in ("accel", "bmc", "hardware"):
            if key in self.model_fields_set:
                problems.append(((key,), f"{key}: {booted}" + (" (a static host's BMC is its `ipmi:`)"
                                                                if key == "bmc" else "")))
        xapi = self.static_toolstack == "xapi"
        if xapi and self.xapi is None:
            problems.append((("toolstack",), ("toolstack: xapi needs `xapi:`, how xenlab logs in to the hosts' xapi "
                                              "(user, and password_file or password_env)")))
        if not xapi and self.xapi is not None:
            problems.append((("xapi",), "xapi: only a lab with `toolstack: xapi` logs in to xapi: remove it"))
        uses_ssh = any(h.ssh is not None for h in self.hosts.values()) or (
            self.services is not None and self.services.ssh is not None)
        if self.known_hosts is None and (uses_ssh or not xapi):
            problems.append((("name",), ("a static lab needs `known_hosts:`, an OpenSSH known_hosts file that pins "
                                        "the SSH key of every host (xenlab never trusts a key on first use)")))
        if xapi and self.xapi is not None and self.xapi.scheme == "http":
            for name, host in self.hosts.items():
                endpoint = host.api.host if host.api is not None else host.address
                if endpoint is not None and not _loopback(endpoint):
                    problems.append((("xapi", "scheme"), (f"xapi.scheme: http would send xapi's password to "
                                                          f"{name} ({endpoint}) in clear: use https, or reach it "
                                                          "through 127.0.0.1 (hosts.NAME.api)")))
                    break
        first = next(iter(self.networks))
        subnet = self.networks[first].subnet
        if subnet is None:
            problems.append((("networks", first), (f"networks.{first}: a static lab's pool network needs its real "
                                                   "subnet, e.g. {subnet: 192.168.50.0/24} (guests get .101 on)")))
        for name, host in self.hosts.items():
            for key in ("image", "vcpus", "disks", "nics", "bmc", "hardware"):
                if key in host.model_fields_set:
                    problems.append((("hosts", name, key), f"hosts.{name}.{key}: {booted}"))
            if host.ssh is None and not xapi:
                problems.append((("hosts", name), (f"hosts.{name}: a static host needs `ssh:` (host, port, user, "
                                                  "key_file)")))
            if host.api is not None and not xapi:
                problems.append((("hosts", name, "api"), (f"hosts.{name}.api: only hosts of a lab with `toolstack: "
                                                         "xapi` have an xapi endpoint: remove it")))
            if host.address is None:
                problems.append((("hosts", name), (f"hosts.{name}: a static host needs `address:`, its address on "
                                                  f"the pool network {first}")))
            elif subnet is not None and ipaddress.IPv4Address(host.address) not in subnet:
                problems.append((("hosts", name, "address"), (f"hosts.{name}.address: {host.address} is not in the "
                                                             f"pool network {subnet}")))
        services = self.services
        if services is not None:
            for key in ("image", "vcpus", "memory_mib", "nics"):
                if key in services.model_fields_set:
                    problems.append((("services", key), f"services.{key}: {booted}"))
            if services.address is None:
                problems.append((("services",), ("services: a static lab's services node needs `address:` (its NFS "
                                                "server's address on the pool network)")))
            if self.static_toolstack == "xl" and services.ssh is None:
                problems.append((("services",), ("services: with toolstack xl the services node needs `ssh:` (xenlab "
                                                "keeps the pool's guests and heartbeats there)")))
        elif self.static_toolstack == "xl":
            problems.append((("name",), ("a static lab with toolstack xl needs a `services:` node (the pool's NFS "
                                        "server, reached over SSH)")))
        else:
            problems.append((("name",), ("a static lab with toolstack xapi needs a `services:` node with `address:` "
                                        "and `nfs_export:` (the NFS server of the pool's shared SR)")))
        return problems

    def static_file_problems(self, base: Path) -> list[tuple[tuple[Any, ...], str]]:
        """Files and environment variables a static lab names that are not there (never their content)."""
        if self.backend != "static":
            return []
        problems: list[tuple[tuple[Any, ...], str]] = []

        def missing(loc: tuple[Any, ...], what: str, path: str) -> None:
            if not resolve_path(path, base).is_file():
                problems.append((loc, (f"{'.'.join(map(str, loc))}: {what} {path} does not exist "
                                      f"(relative paths are read from {base})")))

        def secret(loc: tuple[Any, ...], source: SecretSource) -> None:
            where = ".".join(map(str, loc))
            if source.password_file is not None:
                missing(loc + ("password_file",), "password file", source.password_file)
            elif source.password_env is not None:
                if not os.environ.get(source.password_env):
                    problems.append((loc + ("password_env",), (f"{where}.password_env: the environment variable "
                                                               f"{source.password_env} is not set")))
            else:
                problems.append((loc, (f"{where}: say where its password is: password_file (a 0600 file) or "
                                       "password_env (an environment variable)")))

        if self.known_hosts is not None:
            missing(("known_hosts",), "known_hosts file", self.known_hosts)
        machines: list[tuple[tuple[Any, ...], HostSpec | ServicesSpec]] = [(("hosts", n), h) for n, h in self.hosts.items()]
        if self.services is not None:
            machines.append((("services",), self.services))
        for loc, machine in machines:
            if machine.ssh is not None:
                missing(loc + ("ssh", "key_file"), "SSH key", machine.ssh.key_file)
            ipmi = getattr(machine, "ipmi", None)
            if ipmi is not None:
                secret(loc + ("ipmi",), ipmi)
        if self.xapi is not None:
            secret(("xapi",), self.xapi)
            if self.xapi.ca_file is not None:
                missing(("xapi", "ca_file"), "CA file", self.xapi.ca_file)
        return problems

    def guest_type_problems(self, declared: dict[str, tuple[str, ...]]) -> list[tuple[tuple[Any, ...], str]]:
        """Guest types the lab asks for that a host's image does not declare (`image_guest_types`)."""
        if self.backend != "qemu" or not declared:
            return []
        problems: list[tuple[tuple[Any, ...], str]] = []
        for name, host in self.hosts.items():
            runs = declared.get(host.image)
            if runs is None:
                continue  # no such Xen image: image_problems says so
            missing = [t for t in self.guest_types if t not in runs]
            if missing:
                problems.append((("guest_types",), (f"{name}: image {host.image!r} does not run {', '.join(missing)} "
                                                    f"guests (it declares {', '.join(runs)} in its recipe)")))
        return problems

    def image_problems(self, boots: dict[str, str]) -> list[tuple[tuple[Any, ...], str]]:
        """Images that have no recipe in `boots` (see `image_boots`), or one for another role."""
        if not boots:
            return []  # no recipes to check against (no images directory): `xenlab up` says so
        problems: list[tuple[tuple[Any, ...], str]] = []
        uses: list[tuple[tuple[Any, ...], str, str, str]] = [
            (("hosts", n, "image"), n, h.image, HOST_BOOT) for n, h in self.hosts.items()]
        if self.services is not None:
            uses.append((("services", "image"), self.services.name, self.services.image, SERVICES_BOOT))
        for loc, machine, image, boot in uses:
            fitting = ", ".join(sorted(n for n, b in boots.items() if b == boot)) or "none"
            if image not in boots:
                problems.append((loc, f"{machine}: no image recipe {image!r} (images for it: {fitting})"))
            elif boots[image] != boot:
                problems.append((loc, (f"{machine}: image {image!r} boots {boots[image]}, this machine needs a "
                                       f"{boot} image ({fitting})")))
        return problems

    def nics_of(self, machine: HostSpec | ServicesSpec) -> list[str]:
        """A machine's networks in NIC order (the lab's first network unless given)."""
        return list(machine.nics) if machine.nics is not None else [next(iter(self.networks))]

    def machine_names(self) -> list[str]:
        names = list(self.hosts)
        if self.services is not None:
            names.append(self.services.name)
        return names


def resolve_path(path: str, base: Path) -> Path:
    """A path a lab file names: `~` expanded, relative to the lab file's directory."""
    expanded = Path(path).expanduser()
    return expanded if expanded.is_absolute() else base / expanded


def _checked_lab(doc: LocatedDocument) -> LabSpec:
    spec: LabSpec = validate_document(LabSpec, doc)
    if spec.backend == "static":
        found = spec.static_file_problems(Path(doc.path).resolve().parent)
        if found:
            raise SpecError(doc.path, [(doc.line_of(loc), msg) for loc, msg in found])
        return spec
    found = spec.image_problems(image_boots()) + spec.guest_type_problems(image_guest_types())
    found += xen_file_problems(spec, Path(doc.path).resolve().parent)
    if spec.hardware is not None or any(h.hardware is not None for h in spec.hosts.values()):
        found += spec.hardware_problems(qemu_devices(), qemu_cpu_models())
    if found:
        raise SpecError(doc.path, [(doc.line_of(loc), msg) for loc, msg in found])
    return spec


def check_lab_document(doc: LocatedDocument) -> LabSpec:
    """A lab file's located data to a validated spec, with every check `load_lab` makes
    (for lab data made from a file, e.g. a matrix combination, see matrix.py)."""
    return _checked_lab(doc)


def load_lab(path: str | Path) -> LabSpec:
    """Read and validate a lab file; raises SpecError naming file and line."""
    return _checked_lab(load_located(path))


def parse_lab(text: str, path: str = "<string>") -> LabSpec:
    return _checked_lab(parse_located(text, path))


def resolve_lab_path(name_or_path: str, labs_dir: Path | None = None) -> Path:
    """`xen-pool2` or `labs/xen-pool2.yaml` -> an existing file path."""
    candidate = Path(name_or_path)
    if candidate.suffix in (".yaml", ".yml") or "/" in name_or_path:
        return candidate
    base = labs_dir or Path.cwd() / "labs"
    for suffix in (".yaml", ".yml"):
        if (base / f"{name_or_path}{suffix}").exists():
            return base / f"{name_or_path}{suffix}"
    return base / f"{name_or_path}.yaml"


def lab_json_schema() -> str:
    return json.dumps(LabSpec.model_json_schema(), indent=2)

