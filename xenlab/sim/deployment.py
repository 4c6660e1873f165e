"""The simulated world: hosts, their pool databases, liveness, HA and faults.

A ``Deployment`` owns N hosts.  Each host starts as the master of its own
pool (own ``Database``); ``pool.join`` moves the joiner's host-local objects
into the master's database.  Host liveness (killed / isolated / fenced) is
tracked here, because it drives both the HTTP layer (a dead host stops
answering) and HA (hosts are declared dead after the HA timeout).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from . import datamodel as dmod
from .clock import Clock
from .guests import DEFAULT_BOOT_S, DEFAULT_SWITCHOVER_S, GuestHeartbeats
from .model import NULL_REF, ApiError, Database, Generation, new_ref, new_uuid

GiB = 1024**3
MiB = 1024**2

DEFAULT_HOST_MEMORY = 256 * GiB
DEFAULT_DOM0_MEMORY = 4 * GiB
DEFAULT_HOST_CPUS = 16
HA_DEFAULT_TIMEOUT = 60.0  # seconds; xapi's default HA timeout base
HOST_ASSUMED_DEAD = 600.0  # seconds; without HA the master notices after 10 min

API_VERSION = (2, 21)
PRODUCT_VERSION = "8.3.0"
DEFAULT_CPU_FEATURES = "1fcbfbff-f7fa3223-2d93fbff-00000423"  # cpu_info features words, as xapi shows them

# Templates every fresh pool gets: (name, memory, vcpus, disk size or 0, hvm)
TEMPLATES = [
    ("Other install media", 1 * GiB, 1, 0, True),
    ("Debian Bookworm 12", 1 * GiB, 1, 10 * GiB, False),
    ("CentOS Stream 9", 2 * GiB, 2, 20 * GiB, True),
]

PROVISION_XML = '<provision><disk device="0" size="{size}" sr="" bootable="true" type="system"/></provision>'


# Power states in which xapi allows each VM operation (its lifecycle table).
_ALL = ("Halted", "Paused", "Running", "Suspended")
VM_OP_STATES: dict[str, tuple[str, ...]] = {
    **dict.fromkeys(
        ("changing_VCPUs", "changing_static_range", "changing_memory_limits", "changing_shadow_memory"), ("Halted",)
    ),
    **dict.fromkeys(("changing_NVRAM", "make_into_template", "provision", "start", "start_on"), ("Halted",)),
    "create_vtpm": ("Halted",),
    "unpause": ("Paused",),
    **dict.fromkeys(("csvm", "resume", "resume_on"), ("Suspended",)),
    **dict.fromkeys(
        (
            "awaiting_memory_live",
            "call_plugin",
            "clean_reboot",
            "clean_shutdown",
            "changing_memory_live",
            "changing_shadow_memory_live",
            "changing_VCPUs_live",
            "data_source_op",
            "pause",
            "pool_migrate",
            "send_sysrq",
            "send_trigger",
            "snapshot_with_quiesce",
            "suspend",
        ),
        ("Running",),
    ),
    "changing_dynamic_range": ("Halted", "Running"),
    "clone": ("Halted",),
    "copy": ("Halted",),
    **dict.fromkeys(("create_template", "destroy", "export"), ("Halted", "Suspended")),
    "hard_reboot": ("Paused", "Running"),
    **dict.fromkeys(("checkpoint", "get_boot_record", "shutdown", "hard_shutdown"), ("Paused", "Suspended", "Running")),
    "migrate_send": ("Halted", "Suspended", "Running"),
    **dict.fromkeys(
        (
            "assert_operation_valid",
            "metadata_export",
            "power_state_reset",
            "revert",
            "reverting",
            "snapshot",
            "update_allowed_operations",
            "query_services",
        ),
        _ALL,
    ),
}
_TEMPLATE_OPS = {"clone", "copy", "export", "provision", "destroy", "metadata_export", "create_vtpm"}
_CONTROL_DOMAIN_OPS = {"clean_reboot", "clean_shutdown", "hard_reboot", "hard_shutdown", "query_services"}
# operations the advisory list leaves out (xapi only lists user-facing ones)
_NOT_ADVERTISED = {"assert_operation_valid", "update_allowed_operations", "reverting", "awaiting_memory_live", "csvm"}


def vm_allowed_operations(dm: dmod.Datamodel, rec: dict[str, Any]) -> list[str]:
    ops = []
    for op in dm.enums.get("vm_operations", ()):
        states = VM_OP_STATES.get(op)
        if not states or op in _NOT_ADVERTISED or rec["power_state"] not in states:
            continue
        if rec["is_a_template"] and op not in _TEMPLATE_OPS:
            continue
        if rec["is_control_domain"] and op not in _CONTROL_DOMAIN_OPS:
            continue
        ops.append(op)
    return ops


@dataclass
class SimHost:
    """One physical host: identity, hardware, and simulated process state."""

    index: int
    name: str
    address: str
    uuid: str
    ref: str
    memory_total: int
    cpus: int
    db: Database | None = None
    alive: bool = True  # xapi process reachable at all
    isolated: bool = False  # alive but cut from the other hosts
    fenced: bool = False  # self-fenced by HA; down until healed
    down_since: float | None = None
    on_state_change: list[Callable[[SimHost], None]] = field(default_factory=list)

    @property
    def serving(self) -> bool:
        """Whether the host's HTTP endpoint answers."""
        return self.alive and not self.fenced


class Deployment:
    """Shared state behind every host endpoint (one lock guards it all)."""

    def __init__(
        self,
        hosts: int = 3,
        password: str = "",
        user: str = "root",
        realtime: bool = False,
        host_memory: int = DEFAULT_HOST_MEMORY,
        host_cpus: int = DEFAULT_HOST_CPUS,
        dm: dmod.Datamodel | None = None,
        async_instant: bool = False,
        time_scale: float = 1.0,
        dom0_memory: int = DEFAULT_DOM0_MEMORY,
        guest_boot_s: float = DEFAULT_BOOT_S,
        switchover_s: float = DEFAULT_SWITCHOVER_S,
        event_timeouts: str = "clock",
        addresses: list[str] | None = None,
    ) -> None:
        if hosts < 1:
            raise ValueError("need at least one host")
        if event_timeouts not in ("clock", "wall"):
            raise ValueError(f"event_timeouts must be 'clock' or 'wall', not {event_timeouts!r}")
        if addresses is not None and len(addresses) != hosts:
            raise ValueError(f"{len(addresses)} addresses for {hosts} hosts")
        self.event_timeouts = event_timeouts  # "wall": event.from timeouts in real time (served mode)
        self.dm = dm or dmod.get()
        self.user = user
        self._password = password
        self.clock = Clock(realtime=realtime)
        self.lock = threading.RLock()
        self.cond = threading.Condition(self.lock)
        self.gen = Generation()
        self.async_instant = async_instant  # Async tasks finish without advancing the clock
        self.time_scale = time_scale  # real-time mode: multiply simulated durations by this
        self.stopping = False
        self.dom0_memory = dom0_memory
        self.guests = GuestHeartbeats(guest_boot_s, switchover_s)  # what the VMs' heartbeat senders deliver
        self.hosts: list[SimHost] = []
        self._domid: dict[str, int] = {}
        self.clock.on_tick(self._wake)
        with self.lock:
            for i in range(hosts):
                h = SimHost(
                    index=i,
                    name=f"h{i + 1}",
                    address=addresses[i] if addresses else f"10.0.0.{i + 1}",
                    uuid=new_uuid(),
                    ref=new_ref(),
                    memory_total=host_memory,
                    cpus=host_cpus,
                )
                self.hosts.append(h)
                self.boot_standalone(h)

    # ------------------------------------------------------------------ utils
    def _wake(self) -> None:
        with self.cond:
            self.cond.notify_all()

    def new_db(self) -> Database:
        return Database(self.dm, self.gen, on_change=self.cond.notify_all, derive=self._derive)

    def _derive(self, db: Database, cls: str, ref: str, fields: set[str]) -> None:
        """Keep computed fields (VM.allowed_operations) in step with their inputs."""
        if cls == "VM" and fields & {"power_state", "is_a_template", "is_control_domain"}:
            rec = db.tables["VM"][ref]
            rec["allowed_operations"] = vm_allowed_operations(self.dm, rec)

    def check_password(self, user: str, pw: str) -> bool:
        return user == self.user and pw == self._password

    def now(self):
        return self.clock.utcnow()

    def host(self, key: int | str) -> SimHost:
        """Find a host by index, name ("h2"), address, uuid or ref."""
        if isinstance(key, int):
            return self.hosts[key]
        for h in self.hosts:
            if key in (h.name, h.address, h.uuid, h.ref, str(h.index)):
                return h
        raise KeyError(f"no simulated host {key!r}")

    def host_by_ref(self, ref: str) -> SimHost:
        for h in self.hosts:
            if h.ref == ref:
                return h
        raise ApiError("HANDLE_INVALID", "host", ref)

    def databases(self) -> list[Database]:
        """Every pool's database, once (the members of a pool share one)."""
        found: list[Database] = []
        for h in self.hosts:
            if h.db is not None and not any(h.db is db for db in found):
                found.append(h.db)
        return found

    def pool_ref(self, db: Database) -> str:
        return next(iter(db.all("pool")))

    def pool(self, db: Database) -> dict[str, Any]:
        return db.get(self.pool_ref(db), "pool")

    def master_of(self, db: Database) -> SimHost:
        return self.host_by_ref(self.pool(db)["master"])

    def is_master(self, h: SimHost) -> bool:
        return h.db is not None and self.pool(h.db)["master"] == h.ref

    def members(self, db: Database) -> list[SimHost]:
        return [h for h in self.hosts if h.db is db]

    def reachable(self, a: SimHost, b: SimHost) -> bool:
        """Can a talk to b over the management network?"""
        if a is b:
            return a.serving
        return a.serving and b.serving and not a.isolated and not b.isolated

    def host_live(self, db: Database, href: str) -> bool:
        rec = db.get(href, "host")
        m = rec["metrics"]
        return db.exists(m) and db.get(m)["live"]

    def next_domid(self, h: SimHost) -> int:
        self._domid[h.ref] = self._domid.get(h.ref, 0) + 1
        return self._domid[h.ref]

    # ------------------------------------------------------------------ boot
    def boot_standalone(self, h: SimHost) -> None:
        """Fresh install: own pool, local SR, management network, dom0, templates."""
        db = self.new_db()
        h.db = db
        now = self.now()
        metrics = db.create(
            "host_metrics", memory_total=h.memory_total, memory_free=h.memory_total, live=True, last_updated=now
        )
        host_fields = {
            "uuid": h.uuid,
            "name_label": h.name,
            "hostname": h.name,
            "address": h.address,
            "enabled": True,
            "API_version_major": API_VERSION[0],
            "API_version_minor": API_VERSION[1],
            "API_version_vendor": "XenSource",
            "software_version": {
                "product_brand": "XCP-ng",
                "product_version": PRODUCT_VERSION,
                "platform_name": "XCP",
                "platform_version": "3.4.0",
                "xapi": "24.19",
                "hostname": h.name,
                "xenlab_simulator": "true",
            },
            "capabilities": ["xen-3.0-x86_64", "hvm-3.0-x86_64"],
            "cpu_info": {
                "cpu_count": str(h.cpus),
                "socket_count": "1",
                "vendor": "GenuineIntel",
                "features": DEFAULT_CPU_FEATURES,
            },
            "sched_policy": "credit",
            "supported_bootloaders": ["pygrub", "eliloader"],
            "metrics": metrics,
            "memory_overhead": 0,
            "allowed_operations": [
                op
                for op in self.dm.enums.get("host_allowed_operations", ())
                if op in ("provision", "evacuate", "shutdown", "reboot", "vm_start", "vm_resume", "vm_migrate")
            ],
        }
        spec = self.dm.cls("host")
        db.create("host", ref=h.ref, **{k: v for k, v in host_fields.items() if k in spec.fields})
        for n in range(h.cpus):
            db.create("host_cpu", host=h.ref, number=n, vendor="GenuineIntel", speed=2400, modelname="Simulated CPU")
        net = db.create(
            "network", name_label="Pool-wide network associated with eth0", bridge="xenbr0", MTU=1500, other_config={}
        )
        db.create(
            "PIF",
            device="eth0",
            network=net,
            host=h.ref,
            MAC=self._mac(h.index, 0),
            MTU=1500,
            VLAN=-1,
            physical=True,
            currently_attached=True,
            ip_configuration_mode="Static",
            IP=h.address,
            netmask="255.255.255.0",
            management=True,
        )
        sr = db.create(
            "SR",
            name_label="Local storage",
            type="ext",
            content_type="user",
            shared=False,
            physical_size=1024 * GiB,
            other_config={"i18n-key": "local-storage"},
            sm_config={"devserial": "scsi-sim"},
        )
        db.create("PBD", host=h.ref, SR=sr, device_config={"device": "/dev/sda3"}, currently_attached=True)
        dom0 = self._new_vm(
            db,
            name_label=f"Control domain on host: {h.name}",
            is_control_domain=True,
            memory=self.dom0_memory,
            vcpus=min(8, h.cpus),
        )
        db.set(dom0, power_state="Running", resident_on=h.ref, domid=0)
        self.vm_metrics_running(db, dom0)
        if "control_domain" in spec.fields:
            db.set(h.ref, control_domain=dom0)
        pool_fields = {
            "master": h.ref,
            "default_SR": sr,
            "suspend_image_SR": sr,
            "crash_dump_SR": sr,
            "other_config": {},
        }
        db.create("pool", **pool_fields)
        for name, mem, vcpus, disk, hvm in TEMPLATES:
            other = {"default_template": "true"}
            if disk:
                other["disks"] = PROVISION_XML.format(size=disk)
            t = self._new_vm(db, name_label=name, memory=mem, vcpus=vcpus, template=True, other_config=other, hvm=hvm)
            db.set(t, is_default_template=True)
        self.refresh_memory(db, h.ref)

    @staticmethod
    def _mac(i: int, n: int) -> str:
        return f"02:00:{(i >> 8) & 0xFF:02x}:{i & 0xFF:02x}:{n & 0xFF:02x}:{0:02x}"

    def _new_vm(
        self,
        db: Database,
        name_label: str,
        memory: int,
        vcpus: int,
        is_control_domain: bool = False,
        template: bool = False,
        other_config: dict | None = None,
        hvm: bool = True,
    ) -> str:
        metrics = db.create(
            "VM_metrics", memory_actual=0, VCPUs_number=0, install_time=self.now(), last_updated=self.now()
        )
        fields = {
            "name_label": name_label,
            "is_control_domain": is_control_domain,
            "is_a_template": template,
            "power_state": "Halted",
            "memory_static_max": memory,
            "memory_dynamic_max": memory,
            "memory_dynamic_min": memory,
            "memory_static_min": min(memory, 512 * MiB),
            "memory_target": memory,
            "VCPUs_max": vcpus,
            "VCPUs_at_startup": vcpus,
            "actions_after_shutdown": "destroy",
            "actions_after_reboot": "restart",
            "actions_after_crash": "restart",
            "HVM_boot_policy": "BIOS order" if hvm else "",
            "HVM_boot_params": {"order": "cd"} if hvm else {},
            "PV_bootloader": "" if hvm else "pygrub",
            "platform": {"viridian": "false", "acpi": "1", "apic": "true", "pae": "true"},
            "other_config": other_config or {},
            "metrics": metrics,
            "domid": -1,
            "domain_type": "hvm" if hvm else "pv",
            "user_version": 1,
        }
        spec = self.dm.cls("VM")
        vm = db.create("VM", **{k: v for k, v in fields.items() if k in spec.fields})
        self.update_overhead(db, vm)
        return vm

    # ------------------------------------------------------------------ memory
    @staticmethod
    def memory_overhead(rec: dict[str, Any]) -> int:
        """Per-domain overhead in bytes, following xenopsd's memory model.

        Shadow/p2m pages scale with static_max and vCPUs (times the shadow
        multiplier), plus a little per vCPU and a PVH shim for pv_in_pvh.
        """

        def mib_of_pages(pages: int) -> int:
            return -(-pages // 256)  # 4 KiB pages, rounded up

        static_max_mib = -(-int(rec["memory_static_max"]) // MiB)
        vcpus = int(rec["VCPUs_max"] or 1)
        kind = rec.get("domain_type") or "hvm"
        mult = float(rec.get("HVM_shadow_multiplier") or 1.0) if kind != "pv" else 1.0
        shadow = max(1, int(mib_of_pages(256 * vcpus + 2 * static_max_mib) * mult))
        internal = 0 if kind == "pv" else 1
        shim = 23 + static_max_mib // 90 if kind == "pv_in_pvh" else 0
        return (internal + 1 + shadow + mib_of_pages(38 * vcpus) + shim) * MiB

    def update_overhead(self, db: Database, vm: str) -> None:
        rec = db.get(vm, "VM")
        if not rec["is_control_domain"]:
            db.set(vm, memory_overhead=self.memory_overhead(rec))

    def vm_memory_needed(self, rec: dict[str, Any]) -> int:
        return int(rec["memory_static_max"]) + int(rec.get("memory_overhead") or 0)

    def host_free_memory(self, db: Database, href: str) -> int:
        h = self.host_by_ref(href)
        used = int(db.get(href, "host")["memory_overhead"] or 0)
        for vm in db.get(href, "host")["resident_VMs"]:
            rec = db.get(vm, "VM")
            if rec["power_state"] in ("Running", "Paused"):
                used += self.vm_memory_needed(rec)
        return h.memory_total - used

    def refresh_memory(self, db: Database, href: str) -> None:
        m = db.get(href, "host")["metrics"]
        if db.exists(m):
            db.set(m, memory_free=self.host_free_memory(db, href), last_updated=self.now())

    def vm_metrics_running(self, db: Database, vm: str) -> None:
        rec = db.get(vm, "VM")
        if db.exists(rec["metrics"]):
            db.set(
                rec["metrics"],
                memory_actual=int(rec["memory_static_max"]),
                VCPUs_number=int(rec["VCPUs_at_startup"]),
                start_time=self.now(),
                last_updated=self.now(),
                state=["running"],
                current_domain_type=rec.get("domain_type") or "hvm",
            )

    def vm_metrics_halted(self, db: Database, vm: str) -> None:
        rec = db.get(vm, "VM")
        if db.exists(rec["metrics"]):
            db.set(rec["metrics"], memory_actual=0, VCPUs_number=0, last_updated=self.now(), state=[])

    # ------------------------------------------------------------------ messages
    def add_message(self, db: Database, name: str, priority: int, cls: str, obj_uuid: str, body: str) -> str:
        return db.create(
            "message", name=name, priority=priority, cls=cls, obj_uuid=obj_uuid, timestamp=self.now(), body=body
        )

    # ------------------------------------------------------------------ faults
    def kill_host(self, key: int | str) -> None:
        """The host loses power: endpoint stops answering, its domains die."""
        with self.lock:
            h = self.host(key)
            if not h.alive:
                return
            h.alive = False
            h.down_since = self.clock.now()
            self._schedule_failure_detection(h)
        self._fire(h)

    def isolate_host(self, key: int | str) -> None:
        """The host keeps running but cannot reach (or be reached by) its peers."""
        with self.lock:
            h = self.host(key)
            if h.isolated:
                return
            h.isolated = True
            h.down_since = self.clock.now()
            self._schedule_failure_detection(h)
        self._fire(h)

    def heal(self, key: int | str | None = None) -> None:
        """Undo kill/isolate for one host (or all): it boots back and rejoins."""
        with self.lock:
            targets = self.hosts if key is None else [self.host(key)]
            for h in targets:
                was_down = (not h.alive) or h.fenced
                h.alive, h.isolated, h.fenced, h.down_since = True, False, False, None
                db = h.db
                if db is None:
                    continue
                if was_down:
                    # a rebooted host runs nothing but dom0
                    for vm in list(db.get(h.ref, "host")["resident_VMs"]):
                        rec = db.get(vm, "VM")
                        if not rec["is_control_domain"]:
                            self.force_halt(db, vm)
                m = db.get(h.ref, "host")["metrics"]
                if db.exists(m):
                    db.set(m, live=True, last_updated=self.now())
                if was_down:
                    db.set(h.ref, enabled=True)
                self.refresh_memory(db, h.ref)
        for h in targets:
            self._fire(h)

    def configure_host(
        self, key: int | str, product_version: str | None = None, cpu_vendor: str | None = None,
        cpu_features: str | None = None,
    ) -> None:
        """Make a host differ from its peers (another release, another CPU), as a lab might."""
        with self.lock:
            h = self.host(key)
            assert h.db is not None
            rec = h.db.get(h.ref, "host")
            software, cpu = dict(rec["software_version"]), dict(rec["cpu_info"])
            if product_version is not None:
                software["product_version"] = product_version
            if cpu_vendor is not None:
                cpu["vendor"] = cpu_vendor
            if cpu_features is not None:
                cpu["features"] = cpu_features
            h.db.set(h.ref, software_version=software, cpu_info=cpu)

    def _fire(self, h: SimHost) -> None:
        with self.lock:
            self._guests_follow(h)
        for fn in list(h.on_state_change):
            fn(h)

    def _guests_follow(self, h: SimHost) -> None:
        """A host's guests die with it, and go unheard while it is cut off."""
        if h.db is None:
            return
        now = self.clock.now()
        for vm in h.db.get(h.ref, "host")["resident_VMs"]:
            if h.db.get(vm, "VM")["is_control_domain"]:
                continue
            if not h.serving:
                self.guests.stopped(vm, now)
            elif h.isolated:
                self.guests.cut_off(vm, now)
            else:
                self.guests.reconnected(vm, now)

    def _schedule_failure_detection(self, h: SimHost) -> None:
        db = h.db
        if db is None:
            return
        ha = self.pool(db)["ha_enabled"]
        if ha:
            timeout = self.ha_timeout(db)
            self.clock.call_later(timeout, lambda: self._ha_tick(db))
        else:
            self.clock.call_later(HOST_ASSUMED_DEAD, lambda: self._heartbeat_tick(db))

    def ha_timeout(self, db: Database) -> float:
        cfg = self.pool(db)["ha_configuration"]
        try:
            return float(cfg.get("timeout", HA_DEFAULT_TIMEOUT))
        except ValueError:
            return HA_DEFAULT_TIMEOUT

    def force_halt(self, db: Database, vm: str) -> None:
        rec = db.get(vm, "VM")
        host = rec["resident_on"]
        db.set(vm, power_state="Halted", resident_on=NULL_REF, domid=-1, scheduled_to_be_resident_on=NULL_REF)
        self.guests.stopped(vm, self.clock.now())
        self.vm_metrics_halted(db, vm)
        if db.exists(host, "host"):
            self.refresh_memory(db, host)

    def _heartbeat_tick(self, db: Database) -> None:
        """Without HA the master marks silent hosts not-live after 10 minutes."""
        with self.lock:
            if self.pool(db)["ha_enabled"]:
                return
            master = self.master_of(db)
            now = self.clock.now()
            for h in self.members(db):
                if h is master or h.down_since is None or now - h.down_since < HOST_ASSUMED_DEAD - 1e-6:
                    continue
                if self.reachable(master, h):
                    continue
                if not self.reachable(master, master):
                    continue
                m = db.get(h.ref, "host")["metrics"]
                if db.exists(m):
                    db.set(m, live=False)

    def _ha_tick(self, db: Database) -> None:
        """HA: declare unreachable hosts dead, fence, elect, restart protected VMs."""
        with self.lock:
            pool_ref = self.pool_ref(db)
            pool = db.get(pool_ref)
            if not pool["ha_enabled"]:
                return
            timeout = self.ha_timeout(db)
            now = self.clock.now()
            members = self.members(db)
            failed = [
                h
                for h in members
                if h.down_since is not None
                and now - h.down_since >= timeout - 1e-6
                and (not h.alive or h.isolated)
                and self.host_live(db, h.ref)
            ]
            survivors = [h for h in members if h.alive and not h.isolated and not h.fenced]
            if not failed or not survivors:
                return
            for h in failed:
                if h.alive and h.isolated:
                    h.fenced = True  # xHA: the isolated node kills itself
                hrec = db.get(h.ref, "host")
                self.add_message(
                    db, "HA_HOST_FAILED", 3, "Host", hrec["uuid"], f"Server '{hrec['name_label']}' has failed"
                )
                db.set(hrec["metrics"], live=False)
                db.set(h.ref, enabled=False)
            reset: list[str] = []
            for h in failed:
                for vm in list(db.get(h.ref, "host")["resident_VMs"]):
                    rec = db.get(vm, "VM")
                    if rec["is_control_domain"]:
                        continue
                    self.force_halt(db, vm)
                    reset.append(vm)
            master = self.master_of(db)
            if master in failed:
                new = min(survivors, key=lambda x: x.index)
                db.set(pool_ref, master=new.ref)
            self._ha_restart(db, reset)
        for h in failed:
            self._fire(h)

    def _ha_restart(self, db: Database, reset: list[str]) -> None:
        protected = [
            r
            for r, rec in db.iter_records("VM")
            if rec["ha_restart_priority"] == "restart"
            and rec["ha_always_run"]
            and rec["power_state"] == "Halted"
            and not rec["is_a_template"]
            and not rec["is_control_domain"]
        ]
        best_effort = [r for r in reset if db.get(r, "VM")["ha_restart_priority"] == "best-effort"]

        def key(vm: str):
            rec = db.get(vm, "VM")
            return (int(rec["order"] or 0), rec["name_label"], vm)

        for vm in sorted(protected, key=key) + sorted(best_effort, key=key):
            rec = db.get(vm, "VM")
            if rec["power_state"] != "Halted":
                continue
            target = self.pick_host(db, vm)
            if target is None:
                if vm in protected:
                    self.add_message(
                        db,
                        "HA_PROTECTED_VM_RESTART_FAILED",
                        2,
                        "VM",
                        rec["uuid"],
                        f"VM '{rec['name_label']}' could not be restarted",
                    )
                continue
            self.boot_vm(db, vm, target, paused=False)

    # ------------------------------------------------------------------ placement
    def usable_hosts(self, db: Database, exclude: str | None = None) -> list[str]:
        master = self.master_of(db)
        out = []
        for h in self.members(db):
            if h.ref == exclude:
                continue
            rec = db.get(h.ref, "host")
            if not rec["enabled"] or not self.host_live(db, h.ref) or not self.reachable(master, h):
                continue
            out.append(h.ref)
        return out

    def vm_srs(self, db: Database, vm: str) -> list[str]:
        srs = []
        for vbd in db.get(vm, "VM")["VBDs"]:
            v = db.get(vbd, "VBD")
            if v["empty"] or not db.exists(v["VDI"], "VDI"):
                continue
            sr = db.get(v["VDI"], "VDI")["SR"]
            if sr not in srs:
                srs.append(sr)
        return srs

    def host_sees_sr(self, db: Database, href: str, sr: str) -> bool:
        return any(
            db.get(p, "PBD")["SR"] == sr and db.get(p, "PBD")["currently_attached"]
            for p in db.get(href, "host")["PBDs"]
        )

    def check_can_boot(self, db: Database, vm: str, href: str, memory: bool = True) -> None:
        h = self.host_by_ref(href)
        master = self.master_of(db)
        if not self.host_live(db, href):
            raise ApiError("HOST_NOT_LIVE")
        if not self.reachable(master, h):
            raise ApiError("CANNOT_CONTACT_HOST", href)
        if not db.get(href, "host")["enabled"]:
            raise ApiError("HOST_DISABLED", href)
        for sr in self.vm_srs(db, vm):
            if not self.host_sees_sr(db, href, sr):
                raise ApiError("VM_REQUIRES_SR", vm, sr)
        if memory:
            need = self.vm_memory_needed(db.get(vm, "VM"))
            free = self.host_free_memory(db, href)
            if free < need:
                raise ApiError("HOST_NOT_ENOUGH_FREE_MEMORY", need, free)

    def pick_host(self, db: Database, vm: str, exclude: str | None = None) -> str | None:
        """Most-free-memory placement among hosts that can boot the VM."""
        best, best_free = None, -1
        affinity = db.get(vm, "VM")["affinity"]
        for href in self.usable_hosts(db, exclude=exclude):
            try:
                self.check_can_boot(db, vm, href)
            except ApiError:
                continue
            free = self.host_free_memory(db, href)
            if href == affinity:
                return href
            if free > best_free:
                best, best_free = href, free
        return best

    def boot_vm(self, db: Database, vm: str, href: str, paused: bool) -> None:
        rec = db.get(vm, "VM")
        db.set(
            vm,
            power_state="Paused" if paused else "Running",
            resident_on=href,
            domid=self.next_domid(self.host_by_ref(href)),
            scheduled_to_be_resident_on=NULL_REF,
            ha_always_run=rec["ha_restart_priority"] == "restart",
            last_booted_record="",
        )
        self.vm_metrics_running(db, vm)
        self.refresh_memory(db, href)
        self.guests.booted(vm, self.clock.now(), paused=paused)

    # ------------------------------------------------------------------ lifecycle
    def stop(self) -> None:
        with self.lock:
            self.stopping = True
            self.cond.notify_all()
        self.clock.stop()
