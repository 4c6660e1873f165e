"""The xl toolstack driver: Debian's Xen hosts driven over SSH, a pool built by xenlab.

xl has no pool of its own, so xenlab supplies what XAPI would: a shared SR (the services
node's NFS export, mounted at the same path on every member), dom0-to-dom0 SSH trust for
`xl migrate`, a homogeneity check, and the pool's state in `pool.json` on the shared SR
(every member sees it; the controller holds no state of its own). Guests live in
`SR/guests/NAME/` (config, disk, and `host`: where it was last started).
"""

from __future__ import annotations

import json
import shlex
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import XenlabError
from ..lab.contract import Observer
from ..observe.collector import HEARTBEAT_PORT, heartbeat_key, start_collector, stop_collector
from ..spec import SR_PATH
from ..waiting import wait_for
from .base import (
    FailoverResult,
    GuestSpec,
    HostFacts,
    MigrationResult,
    PoolInfo,
    PoolRefused,
    PoolSettings,
    Toolstack,
    VMInfo,
)
from .cluster_pool import ClusterPool, bmc_access
from .hotplug import HotplugScripts, install_lean_scripts, scripts_for
from .transport import install_receiver, tcp_sender
from .versions import mixed_versions_allowed, version_notes

if TYPE_CHECKING:
    from ..lab import Host, Lab

GUEST_FIRST_OCTET = 101
GUEST_BRIDGE = "xenbr0"
XEN_OUI = "00:16:3e"
TRAFFIC_PORT = 5001  # the guest agent's TCP sink (xenlab/images/files/traffic.c)
CONSOLE_LOG_DIR = "/var/log/xen/console"  # xenconsoled --log=guest (the debian-xen image sets it)
DEBIAN_HOTPLUG = scripts_for("debian")
MEMORY_TOLERANCE = 0.25  # members may differ from the master's total memory by this much
# dom0-to-dom0 trust for `xl migrate`: xenlab's own key and known hosts, beside root's own
# (~/.ssh/id_ed25519 and known_hosts on a real host are someone's: never touched).
POOL_KEY = "/root/.ssh/xenlab_pool_ed25519"
POOL_KNOWN_HOSTS = "/root/.ssh/xenlab_pool_known_hosts"
UNIT_STOPPER = "heartbeat collector"  # what a static lab stops on its services node when it goes down


# -- pure parts (unit-tested) -----------------------------------------------------------
def parse_xl_info(text: str) -> dict[str, str]:
    fields = {}
    for line in text.splitlines():
        if ":" in line:
            key, _, value = line.partition(":")
            fields[key.strip()] = value.strip()
    return fields


def parse_xl_list(text: str) -> list[tuple[str, int, int, str]]:
    """(name, domid, memory MiB, state flags) of every domain but Domain-0."""
    rows = []
    for line in text.splitlines()[1:]:
        parts = line.split()
        if len(parts) >= 5 and parts[0] != "Domain-0" and parts[1].isdigit():
            rows.append((parts[0], int(parts[1]), int(parts[2]), parts[4]))
    return rows


def vm_state(flags: str) -> str:
    """xl's state letters (r b p s c d) to running | paused | halted."""
    if "p" in flags:
        return "paused"
    if "s" in flags or "c" in flags or "d" in flags:
        return "halted"
    return "running"


def check_homogeneous(master: HostFacts, candidate: HostFacts, bridge: str = GUEST_BRIDGE) -> list[str]:
    """Why `candidate` cannot join `master`'s pool (empty: it fits)."""
    problems = []
    mixed = candidate.xen_version != master.xen_version
    if mixed and not mixed_versions_allowed(master.xen_version, candidate.xen_version):
        problems.append(f"Xen {candidate.xen_version} differs from the master's {master.xen_version}")
    # Xen's hw_caps words grow between releases: across versions the lab's one CPU model is the check
    if candidate.cpu_features != master.cpu_features and not mixed:
        problems.append(f"CPU features {candidate.cpu_features} differ from the master's {master.cpu_features}"
                        " (live migration between them is unsafe)")
    low, high = master.memory_total_mib * (1 - MEMORY_TOLERANCE), master.memory_total_mib * (1 + MEMORY_TOLERANCE)
    if not low <= candidate.memory_total_mib <= high:
        problems.append(f"memory {candidate.memory_total_mib} MiB is not within {MEMORY_TOLERANCE:.0%} of the "
                        f"master's {master.memory_total_mib} MiB")
    if bridge not in candidate.bridges:
        problems.append(f"no guest bridge {bridge} (bridges: {', '.join(candidate.bridges) or 'none'})")
    return problems


def migrate_command(vm: str, destination: str, *, transport: str = "ssh") -> str:
    """`xl migrate` over SSH with the pool's own key and pinned host keys only (xl passes
    `-s` to sh, then appends the destination and `xl migrate-receive`). `transport` tcp
    sends the stream in the clear to the destination's receiving socket instead
    (toolstack/transport.py). (A shared SSH connection, ControlPersist, was measured and
    did not pay: reaching the target took 6.7 s with it, 6.6 s without.)"""
    if transport == "tcp":
        return f"xl migrate -s {shlex.quote(tcp_sender(destination))} {shlex.quote(vm)} {shlex.quote(destination)}"
    if transport != "ssh":
        raise ValueError(f"unknown migration transport {transport!r}: ssh or tcp")
    ssh = (f"ssh -i {POOL_KEY} -o IdentitiesOnly=yes -o UserKnownHostsFile={POOL_KNOWN_HOSTS} "
           "-o StrictHostKeyChecking=yes -o BatchMode=yes")
    return f"xl migrate -s {shlex.quote(ssh)} {shlex.quote(vm)} {shlex.quote(destination)}"


def guest_mac(lab_number: int, index: int) -> str:
    """Xen's OUI, then the lab number (12 bits) and the guest index (12 bits)."""
    value = (lab_number << 12) | (index & 0xFFF)
    return f"{XEN_OUI}:{value >> 16 & 0xFF:02x}:{value >> 8 & 0xFF:02x}:{value & 0xFF:02x}"


def guest_config(guest: GuestSpec, *, sr: str, address: str, mac: str, heartbeat_to: str | None,
                 heartbeat_key: str | None = None, traffic_to: str | None = None,
                 hotplug: HotplugScripts = DEBIAN_HOTPLUG) -> str:
    """The xl config of a guest whose kernel, initramfs and disk are on the shared SR.

    Every type boots the same kernel and initramfs directly (no bootloader) and uses the
    PV front-ends for its NIC and disk: a PV guest natively, a PVH guest in its HVM
    container without a device model, an HVM guest through the Xen platform device of its
    device model (qemu-system-xen in dom0), whose emulated disk and NIC Linux unplugs.
    A guest sends heartbeats only with both the collector's address and the lab's heartbeat
    key (the collector drops datagrams without its MAC): the config holds the key, so it is
    written 0600. `hotplug` names the scripts that attach the disk and the vif (Debian's by
    default; the lab's `hotplug: lean` names xenlab's).
    """
    extra = [f"xenlab.ip={address}", f"xenlab.hostname={guest.name}"]
    if guest.heartbeat and heartbeat_to and heartbeat_key:
        extra += [f"xenlab.hb={heartbeat_to}", f"xenlab.hbkey={heartbeat_key}"]
    if guest.writer:
        extra.append("xenlab.writer=1")
    if guest.traffic_sink:
        extra.append(f"xenlab.sink={TRAFFIC_PORT}")
    if traffic_to:
        extra.append(f"xenlab.send={traffic_to}:{TRAFFIC_PORT}:{guest.traffic_seconds}")
    console = "ttyS0" if guest.type == "hvm" else "hvc0"  # an HVM guest's first words go to its UART
    lines = [
        f'name = "{guest.name}"',
        f'type = "{guest.type}"',
        f'kernel = "{sr}/images/pv-guest/vmlinuz"',
        f'ramdisk = "{sr}/images/pv-guest/initrd.img"',
        f'extra = "console={console} quiet {" ".join(extra)}"',
        f"memory = {guest.memory_mib}",
        f"vcpus = {guest.vcpus}",
        (f'vif = ["bridge={GUEST_BRIDGE},mac={mac}{",type=vif" if guest.type == "hvm" else ""}'
         f'{f",script={hotplug.vif}" if hotplug.vif else ""}"]'),
        f'disk = ["format=raw,vdev=xvda,access=rw,script={hotplug.disk},target={sr}/guests/{guest.name}/disk.img"]',
        'on_crash = "destroy"',
    ]
    if guest.type == "hvm":
        lines += ['device_model_version = "qemu-xen"', "vnc = 0", "sdl = 0", 'serial = "pty"',
                  "xen_platform_pci = 1"]
    return "\n".join(lines) + "\n"


# -- the driver -------------------------------------------------------------------------
class XlToolstack(Toolstack):
    kind = "xl"

    def __init__(self, lab: Lab, network: str | None = None):
        self.lab = lab
        self.network = network or lab.plan.networks[0].name
        self.sr = (lab.spec.services.nfs_export if lab.spec.services else SR_PATH)
        self.hotplug = scripts_for(lab.spec.hotplug)  # the lab's choice (default: Debian's scripts)
        self.transport = lab.spec.migration_transport  # the lab's choice (default: ssh)

    # hosts ---------------------------------------------------------------------------
    def _xen_host(self, name: str) -> Host:
        host = self.lab.host(name)
        if host.role != "xen":
            raise XenlabError(f"{name} is not a Xen host (it is the lab's {host.role} node)")
        return host

    def _services(self) -> Host:
        if self.lab.services is None:
            raise XenlabError(f"lab {self.lab.name} has no services node: the xl pool's shared SR needs one")
        return self.lab.services

    def facts(self, host: str) -> HostFacts:
        h = self._xen_host(host)
        out = h.succeed("xl info && echo '--bridges--' && ls /sys/class/net/*/bridge -d 2>/dev/null | cut -d/ -f5",
                        timeout=60)
        info_text, _, bridges = out.partition("--bridges--")
        info = parse_xl_info(info_text)
        return HostFacts(
            name=host, address=h.address(self.network),
            xen_version=f"{info.get('xen_major')}.{info.get('xen_minor')}{info.get('xen_extra', '')}",
            cpu_features=info.get("hw_caps", ""), memory_total_mib=int(info.get("total_memory", 0)),
            memory_free_mib=int(info.get("free_memory", 0)), bridges=tuple(bridges.split()),
        )

    def host_alive(self, host: str, timeout: float = 5.0) -> bool:
        h = self._xen_host(host)
        if not h.process_alive():
            return False
        try:
            return h.run("true", timeout=timeout).ok
        except XenlabError:
            return False

    # pool ----------------------------------------------------------------------------
    def form_pool(self, members: list[str], settings: PoolSettings) -> PoolInfo:
        if not members:
            raise XenlabError("a pool needs at least one member")
        facts = {m: self.facts(m) for m in members}
        master = facts[members[0]]
        for name in members[1:]:
            problems = check_homogeneous(master, facts[name])
            if problems:
                raise PoolRefused(name, "; ".join(problems))
        self._prepare_sr()
        self.ensure_collector()
        pool_key = self._pool_key()
        services = self._services().address(self.network)
        for name in members:
            h = self._xen_host(name)
            h.succeed(f"mkdir -p {self.sr} && (mountpoint -q {self.sr} || mount -t nfs -o vers=4.2,hard,timeo=100 "
                      f"{services}:{self.sr} {self.sr})", timeout=120)
            self._install_trust(h, members, pool_key)
            if self.hotplug.kind == "lean":
                install_lean_scripts(h)
            if self.transport == "tcp":
                install_receiver(h, h.address(self.network), [facts[m].address for m in members])
        clustered = bmc_access(self.lab, members) is not None
        if clustered:  # the pool's HA: Pacemaker and corosync, fencing through the members' BMCs
            ClusterPool.form(self, members, settings.name, settings.detection_timeout_s)
        pool = PoolInfo(settings.name, members[0], tuple(members), self.sr, settings)
        data = {"name": pool.name, "master": pool.master, "members": list(pool.members), "sr_path": self.sr,
                "settings": asdict(settings), "toolstack": self.kind, "formed_at": time.time(),
                "cluster": clustered, "hotplug": self.hotplug.kind,
                "migration_transport": self.transport,
                "xen_versions": {m: f.xen_version for m, f in facts.items()},
                "notes": version_notes({m: f.xen_version for m, f in facts.items()})}
        self._xen_host(members[0]).write_file(f"{self.sr}/pool.json", json.dumps(data, indent=2))
        return pool

    def pool(self) -> PoolInfo | None:
        result = self._services().run(f"cat {self.sr}/pool.json", timeout=30)
        if not result.ok:
            return None
        data = json.loads(result.stdout)
        settings = data["settings"]
        settings["protected"] = tuple(settings.get("protected", ()))
        return PoolInfo(data["name"], data["master"], tuple(data["members"]), data["sr_path"], PoolSettings(**settings))

    def cluster(self) -> ClusterPool | None:
        """The pool's cluster stack (None: a pool without BMCs, which has no HA)."""
        result = self._services().run(f"cat {self.sr}/pool.json", timeout=30)
        if not result.ok:
            return None
        data = json.loads(result.stdout)
        return ClusterPool(self, data["members"]) if data.get("cluster") else None

    def _clustered(self, vm: str) -> ClusterPool | None:
        cluster = self.cluster()
        return cluster if cluster is not None and cluster.is_resource(vm) else None

    def _require_pool(self) -> PoolInfo:
        pool = self.pool()
        if pool is None:
            raise XenlabError(f"lab {self.lab.name} has no pool yet: form one first (form_pool)")
        return pool

    def _prepare_sr(self) -> None:
        """Guest kernel and initramfs on the shared SR, where every member can boot them."""
        from ..images import ImageCache

        image = ImageCache().ensure("pv-guest")
        services = self._services()
        target = f"{self.sr}/images/pv-guest"
        services.succeed(f"mkdir -p {target} {self.sr}/guests")
        marker = f"{target}/digest"
        if services.run(f"cat {marker}").stdout.strip() != image.digest:
            for name in ("vmlinuz", "initrd.img"):
                services.put(image.directory / name, f"{target}/{name}")
            services.write_file(marker, image.digest + "\n")

    def _pool_key(self):
        from ..images.identity import generate_keypair

        return generate_keypair(self.lab.run.root / "keys" / "pool_ed25519", f"xenlab-pool-{self.lab.name}")

    def _install_trust(self, host: Host, members: list[str], pool_key) -> None:
        """dom0-to-dom0 SSH for `xl migrate`: the pool key, and every member's pinned host key."""
        keys = self.lab.run.root / "keys"
        known = "".join(
            f"{self._xen_host(m).address(self.network)},{m} {' '.join((keys / f'host-{m}.pub').read_text().split()[:2])}\n"
            for m in members
        )
        host.succeed("mkdir -p /root/.ssh && chmod 700 /root/.ssh")
        host.write_file(POOL_KEY, Path(pool_key.private_path).read_text(), 0o600)
        host.write_file(POOL_KNOWN_HOSTS, known, 0o644)
        host.succeed(f"grep -qxF {shlex.quote(pool_key.public_line)} /root/.ssh/authorized_keys || "
                     f"echo {shlex.quote(pool_key.public_line)} >> /root/.ssh/authorized_keys")

    # heartbeats ------------------------------------------------------------------------
    def ensure_collector(self) -> None:
        """The collector on the services node, on its lab-network address, with the lab's key.
        A lab whose services node outlives it (a static lab: `on_down`) stops it when it goes
        down; a QEMU lab's goes with its services machine."""
        services = self._services()
        start_collector(services, services.address(self.network), heartbeat_key(self.lab.run.root))
        on_down = getattr(self.lab, "on_down", None)
        if on_down is not None:
            on_down(UNIT_STOPPER, lambda: stop_collector(services))

    def heartbeat_target(self) -> str:
        return f"{self._services().address(self.network)}:{HEARTBEAT_PORT}"

    # guests ----------------------------------------------------------------------------
    def _guest_dir(self, vm: str) -> str:
        return f"{self.sr}/guests/{vm}"

    def _guest_index(self, vm: str) -> int:
        """A stable small number per guest (its address and MAC derive from it)."""
        services = self._services()
        existing = services.run(f"cat {self._guest_dir(vm)}/index").stdout.strip()
        if existing.isdigit():
            return int(existing)
        used = services.run(f"cat {self.sr}/guests/*/index 2>/dev/null").stdout.split()
        index = max([int(u) for u in used if u.isdigit()], default=-1) + 1
        if index > 150:
            raise XenlabError("too many guests for the lab network's address plan (150)")
        return index

    def guest_address(self, index: int) -> str:
        network = next(n for n in self.lab.plan.networks if n.name == self.network)
        return f"{network.subnet.network_address + GUEST_FIRST_OCTET + index}/{network.subnet.prefixlen}"

    def create_vm(self, guest: GuestSpec, host: str) -> VMInfo:
        self._require_pool()
        self._xen_host(host)  # refuses a name that is not a Xen host of the lab
        runs = self.lab.runs(host)
        if guest.type not in runs:
            raise XenlabError(f"{host} cannot run {guest.type} guest {guest.name}: it runs {', '.join(runs)} "
                              "(its image's guest_types, as far as Xen's virt_caps allow)")
        services = self._services()
        directory = self._guest_dir(guest.name)
        if services.run(f"test -e {directory}/{guest.name}.cfg").ok:
            raise XenlabError(f"a guest named {guest.name!r} already exists in the pool")
        if guest.heartbeat:
            self.ensure_collector()  # a restored lab may run none, or one with another key
        traffic_to = None
        if guest.traffic_to:
            peer = services.run(f"cat {self._guest_dir(guest.traffic_to)}/index").stdout.strip()
            if not peer.isdigit():
                raise XenlabError(f"{guest.name} is to send its traffic to {guest.traffic_to}, which the pool "
                                  "does not have")
            traffic_to = self.guest_address(int(peer)).split("/")[0]
        index = self._guest_index(guest.name)
        config = guest_config(guest, sr=self.sr, address=self.guest_address(index),
                              mac=guest_mac(self.lab.plan.number, index), heartbeat_to=self.heartbeat_target(),
                              heartbeat_key=heartbeat_key(self.lab.run.root), traffic_to=traffic_to,
                              hotplug=self.hotplug)
        services.succeed(f"mkdir -p {directory} && echo {index} > {directory}/index && "
                         f"truncate -s {guest.disk_mib}M {directory}/disk.img")
        services.write_file(f"{directory}/{guest.name}.cfg", config, 0o600)  # it holds the heartbeat key
        protected = self._require_pool().settings.protected
        cluster = self.cluster() if guest.name in protected else None
        if cluster is None:
            return self.start_vm(guest.name, host)
        # a protected guest is the stack's: a resource, first placed on `host`
        cluster.add_guest(guest.name, f"{directory}/{guest.name}.cfg", len(protected) - protected.index(guest.name),
                          host)
        services.write_file(f"{directory}/host", host + "\n")
        return self._find(guest.name, host)

    def start_vm(self, vm: str, host: str) -> VMInfo:
        h = self._xen_host(host)
        h.succeed(f"xl create {self._guest_dir(vm)}/{vm}.cfg", timeout=180)
        self._services().write_file(f"{self._guest_dir(vm)}/host", host + "\n")
        return self._find(vm, host)

    def console_log(self, vm: str) -> str:
        """xenconsoled's log of the guest's PV console in its host's dom0 (an HVM guest's
        first words go to its emulated UART instead, which is not logged)."""
        host = self.last_host(vm) or self.vm(vm).host  # one read on the SR, not `xl list` on every member
        return self._xen_host(host).run(f"cat {CONSOLE_LOG_DIR}/guest-{vm}.log 2>/dev/null", timeout=60).stdout

    def _find(self, vm: str, host: str) -> VMInfo:
        for name, domid, memory, flags in parse_xl_list(self._xen_host(host).succeed("xl list", timeout=60)):
            if name == vm:
                return VMInfo(vm, host, vm_state(flags), memory, domid)
        raise XenlabError(f"{vm} is not running on {host}")

    def last_host(self, vm: str) -> str | None:
        out = self._services().run(f"cat {self._guest_dir(vm)}/host").stdout.strip()
        return out or None

    def shutdown_vm(self, vm: str, force: bool = False) -> None:
        cluster = self._clustered(vm)
        if cluster is not None:  # stopped through the stack, else it would start it again
            cluster.stop_guest(vm)
            return
        host = self.vm(vm).host
        h = self._xen_host(host)
        if force:
            h.succeed(f"xl destroy {vm}", timeout=60)
        else:
            h.succeed(f"xl shutdown -w {vm}", timeout=120)

    def pause_vm(self, vm: str) -> None:
        self._xen_host(self.vm(vm).host).succeed(f"xl pause {vm}", timeout=60)

    def unpause_vm(self, vm: str) -> None:
        self._xen_host(self.vm(vm).host).succeed(f"xl unpause {vm}", timeout=60)

    def save_vm(self, vm: str) -> None:
        host = self.vm(vm).host
        self._xen_host(host).succeed(f"xl save {vm} {self._guest_dir(vm)}/saved.img", timeout=600)

    def restore_vm(self, vm: str, host: str) -> VMInfo:
        saved = f"{self._guest_dir(vm)}/saved.img"
        self._xen_host(host).succeed(f"xl restore {saved} && rm -f {saved}", timeout=600)
        self._services().write_file(f"{self._guest_dir(vm)}/host", host + "\n")
        return self._find(vm, host)

    def reboot_vm(self, vm: str, timeout: float = 300) -> VMInfo:
        before = self.vm(vm)
        h = self._xen_host(before.host)
        h.succeed(f"xl reboot {vm}", timeout=60)

        def rebooted() -> VMInfo | None:
            now = self._find(vm, before.host)
            return now if now.domid != before.domid and now.state == "running" else None

        return wait_for(rebooted, f"{vm} running again as a new domain on {before.host}", timeout, 1.0,
                        lambda: h.run("xl list", timeout=30).stdout)

    def destroy_vm(self, vm: str) -> None:
        cluster = self._clustered(vm)
        if cluster is not None:
            cluster.remove_guest(vm)
        for info in self.vms():
            if info.name == vm and info.state != "unknown" and info.state != "halted":
                self._xen_host(info.host).run(f"xl destroy {vm}", timeout=60)
        self._services().succeed(f"rm -rf {self._guest_dir(vm)}")

    def vms(self) -> list[VMInfo]:
        pool = self._require_pool()
        known = self._services().run(f"ls {self.sr}/guests").stdout.split()
        found: dict[str, VMInfo] = {}
        for member in pool.members:
            if not self.host_alive(member, timeout=10):
                continue
            for name, domid, memory, flags in parse_xl_list(self._xen_host(member).succeed("xl list", timeout=60)):
                if name.endswith(("--incoming", "--migratedaway")):
                    continue
                found[name] = VMInfo(name, member, vm_state(flags), memory, domid)
        for name in known:
            if name not in found:
                last = self.last_host(name)
                alive = last is not None and last in pool.members and self.host_alive(last, timeout=10)
                found[name] = VMInfo(name, last or "", "halted" if alive else "unknown", 0)
        return sorted(found.values(), key=lambda v: v.name)

    # migration -------------------------------------------------------------------------
    def migrate(self, vm: str, destination: str, on_start: Callable[[], None] | None = None) -> MigrationResult:
        source = self.vm(vm).host
        if source == destination:
            raise XenlabError(f"{vm} is already on {destination}")
        cluster = self._clustered(vm)
        if cluster is not None:  # a protected guest moves when the stack moves it
            record = cluster.move(vm, source, destination, on_start)
            if record.ok:
                self._services().write_file(f"{self._guest_dir(vm)}/host", destination + "\n")
            return record
        dest_address = self._xen_host(destination).address(self.network)
        started_at, started = time.time(), time.monotonic()
        if on_start is not None:
            on_start()
        result = self._xen_host(source).run(migrate_command(vm, dest_address, transport=self.transport), timeout=600)
        duration = time.monotonic() - started
        record = MigrationResult(vm, source, destination, started_at, duration, ok=result.ok)
        if result.ok:
            self._services().write_file(f"{self._guest_dir(vm)}/host", destination + "\n")
        else:
            lines = (result.stderr or result.stdout).strip().splitlines()
            record.error = lines[-1] if lines else f"xl migrate exited {result.status}"
        return record

    # failover --------------------------------------------------------------------------
    def recover(self, dead_host: str, fault_at: float | None = None, observer: Observer | None = None,
                timeout: float = 600) -> FailoverResult:
        """Wait for the pool's cluster stack to fail `dead_host`'s protected guests over, and
        read from its own records what it did and when (toolstack/cluster_pool.py). xenlab
        neither detects, fences nor restarts: a pool without the stack (no BMCs) has no HA."""
        pool = self._require_pool()
        cluster = self.cluster()
        if cluster is None:
            raise XenlabError(f"pool {pool.name} has no cluster stack (its members have no BMCs: `bmc: ipmi` in the "
                              "lab file, or `ipmi:` per static host), so nothing fails its guests over")
        victims = [vm for vm in pool.settings.protected if self.last_host(vm) == dead_host]
        result = cluster.await_failover(dead_host, fault_at or time.time(), victims, timeout)
        for vm, host in result.restarted.items():
            self._services().write_file(f"{self._guest_dir(vm)}/host", host + "\n")
        return result  # how soon the guests were heard again, and their disks, the runner measures
