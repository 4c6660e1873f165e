"""Simulated guest agents: what the XCP-ng guest tools inside each running VM report to xapi.

There are no real guests, but the tools admins automate with (Ansible's
`wait_for_ip_address`, Xen Orchestra's VM view, Terraform's provider) wait for
`VM_guest_metrics`, so the simulator does what xapi does with a guest's agent
(`xapi_xenops.ml`, `xapi_guest_agent.ml`, `xapi_vm.ml`):

- `VM.start` (and every new domain: reboot, resume) first deletes the VM's old
  guest metrics, then xapi creates an empty record as soon as the domain runs;
- a guest with tools fills it `agent_s` later (on the simulator's clock):
  `os_version`, `PV_drivers_version`, `networks` (`<device>/ip`,
  `<device>/ipv4/0`, `<device>/ipv6/0` per VIF), the agent's `control/feature-*`
  keys in `other`, `PV_drivers_detected`, `live`;
- a migrated guest's agent reports again on its new host (`last_updated` moves);
- a halted VM keeps its last metrics (xapi only clears them at the next start);
- a guest without tools (`other_config:xenlab_sim_guest_tools=false` on the VM or
  the template it was cloned from) keeps the empty record: no address, no OS.

Addresses come from the simulator's address plan: a VIF on a network whose PIFs
carry an address gets the lowest free address of that subnet from `.101` (the
QEMU labs' guest numbering), leased per MAC so it survives reboots and migrations;
a VIF on a network without an addressed PIF gets none (no DHCP there).

A mixin of ``Deployment`` (``deployment.py``): its methods use the deployment's state.
"""

from __future__ import annotations

import ipaddress

from .model import NULL_REF, Database

DEFAULT_AGENT_S = 3.0  # from a domain's start to the agent's first report
TOOLS_KEY = "xenlab_sim_guest_tools"  # VM.other_config: "false" = a guest without tools
GUEST_FIRST_HOST = 101  # guests' first address in a subnet, as the QEMU labs number them

# What the XCP-ng guest tools report, per template a VM was made from (other_config
# base_template_name, which VM.clone writes); anything else reports as a generic Linux.
GUEST_OS: dict[str, dict[str, str]] = {
    "Debian Bookworm 12": {
        "name": "Debian GNU/Linux 12 (bookworm)",
        "uname": "6.1.0-28-amd64",
        "distro": "debian",
        "major": "12",
        "minor": "8",
    },
    "CentOS Stream 9": {
        "name": "CentOS Stream 9",
        "uname": "5.14.0-547.el9.x86_64",
        "distro": "centos",
        "major": "9",
        "minor": "0",
    },
}
GENERIC_OS = {"name": "Linux", "uname": "6.1.0-28-amd64", "distro": "linux", "major": "6", "minor": "1"}
PV_DRIVERS = {"major": "8", "minor": "4", "micro": "0", "build": "1"}  # xe-guest-utilities 8.4.0-1
AGENT_FEATURES = {  # control/feature-* keys a Linux guest with tools advertises
    "feature-balloon": "1",
    "feature-poweroff": "1",
    "feature-reboot": "1",
    "feature-suspend": "1",
    "feature-vcpu-hotplug": "1",
    "has-vendor-device": "0",
}


def has_tools(rec: dict) -> bool:
    return rec["other_config"].get(TOOLS_KEY, "true").lower() not in ("false", "0", "no")


def ipv6_link_local(mac: str) -> str:
    """The EUI-64 link-local address a Linux guest gives the interface with this MAC."""
    b = [int(x, 16) for x in mac.split(":")]
    b[0] ^= 0x02
    eui = b[:3] + [0xFF, 0xFE] + b[3:]
    return str(ipaddress.IPv6Address(bytes([0xFE, 0x80] + [0] * 6 + eui)))


class GuestAgents:
    """The guest agents' reports (part of ``Deployment``)."""

    agent_s: float
    leases: dict[str, str]  # MAC -> IPv4 address, pool-wide as a DHCP server keeps them

    # transitions (called with the deployment lock held) ---------------------------------
    def agent_domain_started(self, db: Database, vm: str) -> None:
        """A new domain: xapi drops the old metrics and creates an empty record; the agent reports later."""
        self.delete_guest_metrics(db, vm)
        gm = db.create("VM_guest_metrics", live=True, last_updated=self.now())
        db.set(vm, guest_metrics=gm)
        self._schedule_report(db, vm)

    def agent_migrated(self, db: Database, vm: str) -> None:
        self._schedule_report(db, vm)

    def delete_guest_metrics(self, db: Database, vm: str) -> None:
        gm = db.get(vm, "VM")["guest_metrics"]
        if gm != NULL_REF:
            db.set(vm, guest_metrics=NULL_REF)
            if db.exists(gm, "VM_guest_metrics"):
                db.destroy(gm)

    def copy_guest_metrics(self, db: Database, vm: str) -> str:
        """VM.clone/copy give the new VM a copy of the source's record (xapi's copy_guest_metrics)."""
        gm = db.get(vm, "VM")["guest_metrics"]
        if gm == NULL_REF or not db.exists(gm, "VM_guest_metrics"):
            return NULL_REF
        rec = {k: v for k, v in db.snapshot(gm).items() if k != "uuid"}
        return db.create("VM_guest_metrics", **rec)

    # the agent ------------------------------------------------------------------------------
    def _schedule_report(self, db: Database, vm: str) -> None:
        domid = db.get(vm, "VM")["domid"]
        self.clock.call_later(self.agent_s, lambda: self._report(db, vm, domid))

    def _report(self, db: Database, vm: str, domid: int) -> None:
        with self.lock:
            if not db.exists(vm, "VM"):
                return
            rec = db.get(vm, "VM")
            if rec["domid"] != domid or rec["power_state"] not in ("Running", "Paused") or not has_tools(rec):
                return  # that domain is gone (or has no agent): nothing reports
            if rec["power_state"] == "Paused":
                self._schedule_report(db, vm)  # a paused guest runs no agent: it reports once unpaused
                return
            host = rec["resident_on"]
            if host == NULL_REF or not self.reachable(self.master_of(db), self.host_by_ref(host)):
                return
            gm = rec["guest_metrics"]
            if gm == NULL_REF or not db.exists(gm, "VM_guest_metrics"):
                gm = db.create("VM_guest_metrics")
                db.set(vm, guest_metrics=gm)
            os_version = GUEST_OS.get(rec["other_config"].get("base_template_name", ""), GENERIC_OS)
            db.set(
                gm,
                os_version=dict(os_version),
                PV_drivers_version=dict(PV_DRIVERS),
                PV_drivers_up_to_date=True,
                PV_drivers_detected=True,
                networks=self._networks(db, vm),
                other=dict(AGENT_FEATURES),
                can_use_hotplug_vbd="yes",
                can_use_hotplug_vif="yes",
                live=True,
                last_updated=self.now(),
            )

    def _networks(self, db: Database, vm: str) -> dict[str, str]:
        out: dict[str, str] = {}
        for vif in db.get(vm, "VM")["VIFs"]:
            v = db.get(vif, "VIF")
            device = v["device"]
            ip = self._lease(db, v["network"], v["MAC"])
            if ip:
                out[f"{device}/ip"] = ip
                out[f"{device}/ipv4/0"] = ip
            out[f"{device}/ipv6/0"] = ipv6_link_local(v["MAC"])
        return out

    def _lease(self, db: Database, network: str, mac: str) -> str | None:
        """The address a DHCP server on `network` hands this MAC (None: no addressed PIF there)."""
        if not db.exists(network, "network"):
            return None
        subnet, taken = None, set()
        for pif in db.get(network, "network")["PIFs"]:
            p = db.get(pif, "PIF")
            if p["IP"] and p["netmask"]:
                iface = ipaddress.IPv4Interface(f"{p['IP']}/{p['netmask']}")
                subnet = subnet or iface.network
                taken.add(str(iface.ip))
        if subnet is None:
            return None
        held = self.leases.get(mac)
        if held and ipaddress.IPv4Address(held) in subnet:
            return held
        taken |= set(self.leases.values())
        for offset in range(GUEST_FIRST_HOST, subnet.num_addresses - 1):
            candidate = str(subnet.network_address + offset)
            if candidate not in taken:
                self.leases[mac] = candidate
                return candidate
        return None  # the subnet is full: the guest gets no address
