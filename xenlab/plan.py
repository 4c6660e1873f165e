"""The deterministic plan of a lab: who is where on which network, with which identity.

Everything here is derived from the lab spec alone (no state, no I/O), so two runs of
the same lab agree and two labs with different names do not collide: the lab name is
hashed into a 12-bit lab number that appears in every MAC and default subnet.
"""

from __future__ import annotations

import hashlib
import ipaddress
from dataclasses import dataclass, field

from .hardware import Hardware
from .spec import LabSpec, default_subnet, lab_number
from .xen_spec import ProvisionSpec, XenSpec

__all__ = ["default_subnet", "lab_number", "plan_lab"]  # the first two are defined with the spec

MAC_PREFIX = 0x02  # locally administered, unicast
FIRST_HOST_OCTET = 11  # hosts get .11, .12, ...; the services node gets .2
SERVICES_OCTET = 2


def mac_address(lab_name: str, network_index: int, machine_index: int) -> str:
    """02:58:LL:LN:00:MM - lab number (12 bits), network nibble (MGMT for management), machine."""
    n = lab_number(lab_name)
    nibble = 0xF if network_index == MGMT else network_index & 0x7
    octets = [MAC_PREFIX, 0x58, n >> 4, ((n & 0xF) << 4) | nibble, 0x00, machine_index & 0xFF]
    return ":".join(f"{o:02x}" for o in octets)


MGMT = -1  # network index of the management (user-mode) NIC


def machine_id(lab_name: str, machine: str) -> str:
    """The systemd machine-id of a lab machine: 32 hex digits, unique per lab and machine."""
    return hashlib.sha256(f"xenlab:{lab_name}:{machine}".encode()).hexdigest()[:32]


@dataclass(frozen=True)
class NicPlan:
    network: str
    device: str  # name inside the machine: eth1, eth2, ... (eth0 is management)
    mac: str
    address: ipaddress.IPv4Interface


@dataclass(frozen=True)
class MachinePlan:
    """One QEMU machine of the lab: a Xen host or the services node."""

    name: str
    index: int
    role: str  # "xen" or "services"
    image: str
    vcpus: int
    memory_mib: int
    dom0_memory_mib: int | None
    machine_id: str
    mgmt_mac: str
    nics: tuple[NicPlan, ...]
    data_disks: tuple[tuple[str, int], ...]
    hardware: Hardware = field(default_factory=Hardware)  # the services node always has the default machine
    # The Xen under test (the lab file's `xen:`, the host's over the lab's), extra packages and
    # provisioning: a host with any of them boots its own image layer (lab/user_xen.py).
    xen: XenSpec | None = None
    packages: tuple[str, ...] = ()
    provision: ProvisionSpec | None = None

    def address_on(self, network: str) -> ipaddress.IPv4Address:
        for nic in self.nics:
            if nic.network == network:
                return nic.address.ip
        raise KeyError(f"{self.name} has no nic on network {network!r}")

    @property
    def dom0_mode(self) -> str:
        return self.xen.dom0.mode if self.xen is not None and self.xen.dom0 is not None else "pv"

    @property
    def own_layer(self) -> bool:
        """Whether this host boots a layer of its own over its image (user files, packages, provisioning)."""
        return self.role == "xen" and (self.xen is not None or bool(self.packages) or self.provision is not None)

    @property
    def image_key(self) -> str:
        """Its entry among the lab's built images: the image, or its own layer over it."""
        return f"{self.image}+{self.name}" if self.own_layer else self.image

    @property
    def bridge(self) -> str | None:
        """Xen hosts bridge their first lab NIC as xenbr0 (guests attach there)."""
        return "xenbr0" if self.role == "xen" and self.nics else None


@dataclass(frozen=True)
class NetworkPlan:
    name: str
    index: int
    subnet: ipaddress.IPv4Network


@dataclass(frozen=True)
class LabPlan:
    lab: str
    number: int
    networks: tuple[NetworkPlan, ...]
    machines: tuple[MachinePlan, ...]

    def machine(self, name: str) -> MachinePlan:
        for m in self.machines:
            if m.name == name:
                return m
        known = ", ".join(m.name for m in self.machines)
        raise KeyError(f"no host {name!r} in lab {self.lab} (hosts: {known})")

    @property
    def hosts(self) -> tuple[MachinePlan, ...]:
        return tuple(m for m in self.machines if m.role == "xen")

    @property
    def services(self) -> MachinePlan | None:
        return next((m for m in self.machines if m.role == "services"), None)


def plan_lab(spec: LabSpec) -> LabPlan:
    """Derive networks, addresses, MACs and identities from a validated spec."""
    networks = tuple(
        NetworkPlan(name, i, net.subnet or default_subnet(spec.name, i))
        for i, (name, net) in enumerate(spec.networks.items())
    )
    by_name = {n.name: n for n in networks}
    machines: list[MachinePlan] = []

    def nics_for(names: list[str], index: int, octet: int) -> tuple[NicPlan, ...]:
        result = []
        for position, network_name in enumerate(names, start=1):
            network = by_name[network_name]
            address = network.subnet.network_address + octet
            result.append(NicPlan(
                network_name,
                f"eth{position}",
                mac_address(spec.name, network.index, index),
                ipaddress.IPv4Interface(f"{address}/{network.subnet.prefixlen}"),
            ))
        return tuple(result)

    for index, (name, host) in enumerate(spec.hosts.items()):
        machines.append(MachinePlan(
            name=name, index=index, role="xen", image=host.image, vcpus=host.vcpus,
            memory_mib=host.memory_mib, dom0_memory_mib=host.dom0_memory_mib,
            machine_id=machine_id(spec.name, name), mgmt_mac=mac_address(spec.name, MGMT, index),
            nics=nics_for(spec.nics_of(host), index, FIRST_HOST_OCTET + index),
            data_disks=tuple((d.name, d.size_gib) for d in host.disks), hardware=spec.hardware_of(name),
            xen=spec.xen_of(name), packages=tuple(spec.packages), provision=spec.provision,
        ))
    if spec.services is not None:
        svc = spec.services
        index = len(machines)
        machines.append(MachinePlan(
            name=svc.name, index=index, role="services", image=svc.image, vcpus=svc.vcpus,
            memory_mib=svc.memory_mib, dom0_memory_mib=None,
            machine_id=machine_id(spec.name, svc.name), mgmt_mac=mac_address(spec.name, MGMT, index),
            nics=nics_for(spec.nics_of(svc), index, SERVICES_OCTET), data_disks=(),
        ))
    return LabPlan(spec.name, lab_number(spec.name), networks, tuple(machines))
