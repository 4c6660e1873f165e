"""The driver interface scenarios speak, and the typed records drivers return.

A driver knows one toolstack (xl over SSH, XAPI over XenAPI). It returns what happened
(typed records) and does not measure the guests: downtime, recovery and disk integrity
come from the guests' heartbeats and records, measured by the scenario runner through
the observer (xenlab.metrics), so the same measurement applies whatever the toolstack.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field

from ..errors import XenlabError
from ..lab.contract import Observer
from ..recipe_facts import GUEST_TYPES, GuestType
from ..spec import SR_PATH


class PoolRefused(XenlabError):
    """A host cannot join the pool; `reason` says why (version, CPU features, memory, bridge)."""

    def __init__(self, host: str, reason: str):
        self.host, self.reason = host, reason
        super().__init__(f"{host} refused from the pool: {reason}")


class VerbNotOffered(XenlabError):
    """A toolstack driver that does not (yet) offer a guest lifecycle verb."""

    def __init__(self, toolstack: str, verb: str):
        self.toolstack, self.verb = toolstack, verb
        super().__init__(f"the {toolstack} driver does not offer {verb}")


@dataclass(frozen=True)
class HostFacts:
    """What pool homogeneity is judged on."""

    name: str
    address: str  # on the pool's network
    xen_version: str
    cpu_features: str  # the hypervisor's CPU feature words (xl info hw_caps)
    memory_total_mib: int
    memory_free_mib: int
    bridges: tuple[str, ...]


@dataclass(frozen=True)
class PoolSettings:
    """A pool's explicit policy: which guests are protected, in which order they restart."""

    name: str = "pool"
    detection_timeout_s: float = 30.0  # a host silent this long is declared dead
    protected: tuple[str, ...] = ()  # guests restarted elsewhere when their host dies, in priority order
    shared_sr: str = SR_PATH  # NFS export of the services node, mounted at the same path on members


@dataclass(frozen=True)
class PoolInfo:
    name: str
    master: str
    members: tuple[str, ...]
    sr_path: str  # where the shared SR is mounted on every member
    settings: PoolSettings


@dataclass(frozen=True)
class GuestSpec:
    name: str
    memory_mib: int = 128
    vcpus: int = 1
    disk_mib: int = 64
    heartbeat: bool = True  # send a UDP heartbeat to the services node every 10 ms
    writer: bool = True  # write a verifiable pattern to its disk
    type: GuestType = "pv"  # pv | pvh | hvm (xenlab.spec.GUEST_TYPES)
    # Guest-to-guest throughput: a sink counts the TCP streams it receives, a sender sends
    # one stream of traffic_seconds to the guest named traffic_to; each prints its figures
    # on its console (the guest agent xenlab-traffic, read back through `console_log`).
    traffic_sink: bool = False
    traffic_to: str = ""
    traffic_seconds: int = 10

    def __post_init__(self) -> None:
        if self.type not in GUEST_TYPES:
            raise XenlabError(f"guest {self.name}: unknown guest type {self.type!r} (one of {', '.join(GUEST_TYPES)})")
        if self.traffic_to == self.name:
            raise XenlabError(f"guest {self.name}: cannot send its traffic to itself")
        if not 1 <= self.traffic_seconds <= 600:
            raise XenlabError(f"guest {self.name}: traffic_seconds {self.traffic_seconds} is not within 1-600")

    @property
    def sends_traffic(self) -> bool:
        return self.traffic_sink or bool(self.traffic_to)


@dataclass(frozen=True)
class VMInfo:
    name: str
    host: str
    state: str  # running | paused | halted | unknown
    memory_mib: int
    domid: int | None = None


@dataclass
class MigrationResult:
    vm: str
    source: str
    destination: str
    started_at: float  # wall clock (time.time()) when the migration was started
    duration_s: float  # the toolstack call, start to return
    downtime_s: float | None = None  # largest heartbeat gap around the switch-over
    heartbeats_lost: int | None = None
    integrity_ok: bool | None = None
    ok: bool = True
    error: str = ""


@dataclass
class FailoverResult:
    failed_host: str
    fault_at: float
    detected_after_s: float | None = None
    fenced_after_s: float | None = None
    restarted: dict[str, str] = field(default_factory=dict)  # guest -> new host
    # From a cluster stack's own records (an xl pool's Pacemaker, toolstack/cluster_pool.py):
    fence_requested_after_s: float | None = None  # the stack asked for the lost host to be fenced
    started_after_s: dict[str, float] = field(default_factory=dict)  # guest -> its resource started on the survivor
    fencing: str = ""  # what the stack says it did: action, target, which member ran it, result
    fenced_by: str = ""  # the member that fenced (a fence race's winner)
    records: list[str] = field(default_factory=list)  # the stack's log lines behind the figures
    heartbeat_back_after_s: dict[str, float] = field(default_factory=dict)  # measured by the runner
    integrity_ok: dict[str, bool] = field(default_factory=dict)  # measured by the runner
    ok: bool = True
    error: str = ""


class Toolstack(ABC):
    """One pool's toolstack. Host names are lab host names."""

    kind: str = "abstract"

    @abstractmethod
    def facts(self, host: str) -> HostFacts: ...

    @abstractmethod
    def form_pool(self, members: list[str], settings: PoolSettings) -> PoolInfo:
        """Make `members` a pool (first is master); refuse a misfit with PoolRefused."""

    @abstractmethod
    def pool(self) -> PoolInfo | None:
        """The pool as stored where every member sees it (None before form_pool)."""

    @abstractmethod
    def create_vm(self, guest: GuestSpec, host: str) -> VMInfo:
        """Create and start `guest` on `host`, its disk on the shared SR."""

    @abstractmethod
    def start_vm(self, vm: str, host: str) -> VMInfo: ...

    @abstractmethod
    def shutdown_vm(self, vm: str, force: bool = False) -> None: ...

    @abstractmethod
    def destroy_vm(self, vm: str) -> None:
        """Stop and remove a guest, its disk included."""

    # Lifecycle verbs a qualification times; a driver that lacks one says so (VerbNotOffered).
    def pause_vm(self, vm: str) -> None:
        raise VerbNotOffered(self.kind, "pause")

    def unpause_vm(self, vm: str) -> None:
        raise VerbNotOffered(self.kind, "unpause")

    def save_vm(self, vm: str) -> None:
        """Suspend `vm` to a file on the shared SR (the domain is gone afterwards)."""
        raise VerbNotOffered(self.kind, "save")

    def restore_vm(self, vm: str, host: str) -> VMInfo:
        """Resume a saved `vm` on `host` from its file on the shared SR."""
        raise VerbNotOffered(self.kind, "restore")

    def reboot_vm(self, vm: str, timeout: float = 300) -> VMInfo:
        """Ask `vm` to reboot; returns once it runs again as a new domain."""
        raise VerbNotOffered(self.kind, "reboot")

    def console_log(self, vm: str) -> str:
        """What `vm` has printed on its (PV) console since it started on its current host."""
        raise VerbNotOffered(self.kind, "reading a guest's console")

    @abstractmethod
    def vms(self) -> list[VMInfo]:
        """Every guest of the pool and where it runs (dead hosts' guests as unknown)."""

    def vms_on(self, host: str) -> list[VMInfo]:
        return [v for v in self.vms() if v.host == host and v.state in ("running", "paused")]

    def vm(self, name: str) -> VMInfo:
        for v in self.vms():
            if v.name == name:
                return v
        raise XenlabError(f"no guest {name!r} in the pool")

    @abstractmethod
    def migrate(self, vm: str, destination: str, on_start: Callable[[], None] | None = None) -> MigrationResult:
        """Live-migrate; fills vm, source, destination, started_at, duration_s, ok/error.

        `on_start` is called the moment the migration itself is launched (after the
        lookups before it), so a fault timed into the migration is timed from there."""

    def evacuate(self, host: str) -> list[MigrationResult]:
        """Move every guest off `host`, each to the member with most free memory."""
        results = []
        for info in self.vms_on(host):
            candidates = [m for m in self.pool().members if m != host and self.host_alive(m)]
            if not candidates:
                raise XenlabError(f"cannot evacuate {host}: no other live member")
            target = max(candidates, key=lambda m: self.facts(m).memory_free_mib)
            results.append(self.migrate(info.name, target))
        return results

    @abstractmethod
    def host_alive(self, host: str, timeout: float = 5.0) -> bool: ...

    def recover(self, dead_host: str, fault_at: float, observer: Observer | None = None) -> FailoverResult | None:
        """Restart the protected guests of the lost `dead_host` on the pool's other members.

        A pool that restarts guests by itself (no recover step to ask for) returns None. A
        pool whose HA stack decides (xapi's HA; Pacemaker on an xl pool) is only waited for
        and its records read: the driver never detects, fences or restarts by itself.
        What the guests went through is measured by the runner, not here."""
        return None
