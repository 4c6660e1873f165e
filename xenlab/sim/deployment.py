"""The simulated world: hosts, their pool databases, liveness, HA and faults.

A ``Deployment`` owns N hosts.  Each host starts as the master of its own
pool (own ``Database``); ``pool.join`` moves the joiner's host-local objects
into the master's database.  Host liveness (killed / isolated / fenced) is
tracked here, because it drives both the HTTP layer (a dead host stops
answering) and HA (hosts are declared dead after the HA timeout).
"""

from __future__ import annotations

import threading
from typing import Any

from . import datamodel as dmod
from .agents import DEFAULT_AGENT_S, GuestAgents
from .boot import Boot
from .clock import Clock
from .failures import Failures
from .guests import DEFAULT_BOOT_S, DEFAULT_SWITCHOVER_S, GuestHeartbeats
from .hosts import (
    DEFAULT_DOM0_MEMORY,
    DEFAULT_HOST_CPUS,
    DEFAULT_HOST_MEMORY,
    SimHost,
    vm_allowed_operations,
)
from .memory import Memory
from .model import ApiError, Database, Generation, new_ref, new_uuid
from .placement import Placement


class Deployment(Boot, Memory, Failures, Placement, GuestAgents):
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
        agent_s: float = DEFAULT_AGENT_S,
    ) -> None:
        if hosts < 1:
            raise ValueError("need at least one host")
        if event_timeouts not in ("clock", "wall"):
            raise ValueError(f"event_timeouts must be 'clock' or 'wall', not {event_timeouts!r}")
        if agent_s < 0:
            raise ValueError("the guest agents' report delay cannot be negative")
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
        self.agent_s = agent_s  # from a domain's start to its guest agent's report (agents.py)
        self.leases: dict[str, str] = {}  # guest MAC -> the address the plan gave it
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
        if cls == "VM" and fields & {"power_state", "is_a_template", "is_control_domain", "is_a_snapshot",
                                      "is_default_template", "other_config"}:
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

    # ------------------------------------------------------------------ lifecycle
    def stop(self) -> None:
        with self.lock:
            self.stopping = True
            self.cond.notify_all()
        self.clock.stop()
