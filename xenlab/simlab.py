"""Labs of simulated xapi hosts (`backend: sim`): a pool without QEMU, in this process.

A sim lab starts a `xenlab.sim.SimServer` on 127.0.0.1 and gives the scenario layer
what a QEMU lab gives it: hosts by name, the XAPI driver's way in (`xapi_access`),
faults and an observer. It keeps one timeline with the scenario runner: the
simulator's clock runs in real time (`time.time()`), so a fault's time, a migration's
window and a guest's heartbeats compare directly. xapi operations take their modelled
durations times the lab's `time_scale`; the HA timeout (the pool's detection timeout)
and the heartbeat model are not scaled, so their figures read as on a real pool.

What a simulator cannot give is refused or reported as such: only power cuts and
partitions are simulated; there are no checkpoints; a simulated guest writes nothing to
its disk, so its integrity is never measured (NotMeasurable, not a made-up "ok").
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Self

from .errors import NotMeasurable, XenlabError
from .faults import ActiveFault
from .metrics import IntegrityReport
from .spec import LabSpec, SimSpec
from .toolstack.xapi import XapiAccess

if TYPE_CHECKING:
    from .scenario.model import Scenario
    from .sim.server import SimServer

MiB = 1024 * 1024
SIMULATED_FAULTS = {"power_cut": "kill_host", "partition": "isolate_host"}  # fault kind -> simulator control
POLL_S = 0.1  # a simulated pool answers in milliseconds: the runner may look often


@dataclass(frozen=True)
class SimLabHost:
    """A simulated host as the lab names it: its xapi address and URL."""

    name: str
    address: str
    url: str


class SimLab:
    """A running lab of simulated xapi hosts; lab host i is simulated host i."""

    toolstack_kind = "xapi"
    poll_s = POLL_S

    def __init__(self, spec: LabSpec, spec_path: str = ""):
        if spec.backend != "sim":
            raise XenlabError(f"lab {spec.name} is a {spec.backend} lab, not a sim lab")
        self.spec, self.spec_path, self.name = spec, spec_path, spec.name
        self.model = spec.sim or SimSpec()
        self.password = secrets.token_urlsafe(16)
        self.server: SimServer | None = None
        self.names = list(spec.hosts)

    # lifecycle -----------------------------------------------------------------------
    def up(self, progress: Callable[[str, str], None] = lambda subject, message: None) -> Self:
        from .sim.server import SimServer

        if self.server is not None:
            return self
        first = next(iter(self.spec.hosts.values()))
        self.server = SimServer(hosts=len(self.names), password=self.password, realtime=True,
                                host_memory=first.memory_mib * MiB, dom0_memory=first.dom0_memory_mib * MiB,
                                time_scale=self.model.time_scale, guest_boot_s=self.model.guest_boot_s,
                                switchover_s=self.model.switchover_pause_s).start()
        for name in self.names:
            host = self.host(name)
            progress(name, f"simulated xapi {host.address} at {host.url}")
        return self

    def down(self) -> None:
        server, self.server = self.server, None
        if server is not None:
            server.stop()

    def __enter__(self) -> Self:
        return self.up()

    def __exit__(self, *exc: object) -> None:
        self.down()

    @property
    def running(self) -> SimServer:
        if self.server is None:
            raise XenlabError(f"sim lab {self.name} is not up")
        return self.server

    # hosts -----------------------------------------------------------------------------
    def index_of(self, name: str) -> int:
        """The simulated host behind lab host `name`."""
        if name not in self.names:
            services = f" ({name} is the services node, which a sim lab does not simulate)" \
                if self.spec.services is not None and name == self.spec.services.name else ""
            raise XenlabError(f"sim lab {self.name} has no host {name!r} (hosts: {', '.join(self.names)}){services}")
        return self.names.index(name)

    def host(self, name: str) -> SimLabHost:
        server = self.running
        simulated = server.deployment.hosts[self.index_of(name)]
        return SimLabHost(name, simulated.address, server.url_for(simulated.index))

    @property
    def hosts(self) -> list[SimLabHost]:
        return [self.host(n) for n in self.names]

    # what the scenario layer asks for -------------------------------------------------
    def xapi_access(self) -> XapiAccess:
        server = self.running
        services = self.spec.services
        return XapiAccess(addresses={h.name: h.address for h in self.hosts}, url_for=server.url_for,
                          user=server.deployment.user, password=self.password,
                          nfs_server=services.name if services else "services",
                          nfs_path=services.nfs_export if services else "/srv/xenlab")

    def faults(self) -> SimFaults:
        return SimFaults(self)

    def observer(self) -> SimObserver:
        return SimObserver(self)

    def checkpoint_save(self, tag: str) -> float:
        raise XenlabError(f"checkpoints are not supported on sim lab {self.name}")

    def checkpoint_restore(self, tag: str) -> float:
        raise XenlabError(f"checkpoints are not supported on sim lab {self.name}")


class SimFaults:
    """Faults the simulator models: a power cut kills a host, a partition isolates it."""

    def __init__(self, lab: SimLab):
        self.lab = lab

    def inject(self, kind: str, target: str | list[str], **params: Any) -> ActiveFault:
        if kind not in SIMULATED_FAULTS:
            raise XenlabError(unsupported_fault(kind, self.lab.name))
        network = params.get("network")
        first = next(iter(self.lab.spec.networks))
        if network not in (None, first):
            raise XenlabError(f"sim lab {self.lab.name} simulates one network ({first}), not {network!r}")
        targets = [target] if isinstance(target, str) else list(target)
        indexes = [self.lab.index_of(t) for t in targets]
        control = self.lab.running.control
        started = control.now()
        for index in indexes:
            getattr(control, SIMULATED_FAULTS[kind])(index)

        def heal() -> None:
            for index in indexes:
                control.heal(index)

        return ActiveFault(kind, target, started, dict(params), heal)


class SimObserver:
    """The simulated guests' heartbeats (xenlab.sim.guests), on the runner's clock."""

    def __init__(self, lab: SimLab):
        self.lab = lab

    def heartbeats(self, vm: str, since: float | None = None) -> list[tuple[int, float]]:
        try:
            return self.lab.running.control.heartbeats(vm, since)
        except KeyError:
            return []  # never ran: nothing was heard

    def verify_disk(self, vm: str) -> IntegrityReport:
        raise NotMeasurable(f"{vm}'s disk integrity is not measured on sim lab {self.lab.name}: "
                            "a simulated guest writes nothing to its disk")


def unsupported_fault(kind: str, lab: str) -> str:
    return (f"fault {kind} is not simulated on sim lab {lab} "
            f"(sim labs simulate {', '.join(SIMULATED_FAULTS)})")


def scenario_problems(scenario: Scenario, spec: LabSpec) -> list[tuple[int | None, str]]:
    """What `scenario` asks that a sim lab cannot do, with lines, before anything starts."""
    found = []
    for loc, fault in scenario.faults():
        if fault.kind not in SIMULATED_FAULTS:
            found.append((scenario.line_of(loc), unsupported_fault(fault.kind, spec.name)))
        elif spec.services is not None and spec.services.name in fault.targets:
            found.append((scenario.line_of(loc + ("target",)),
                          f"sim lab {spec.name} does not simulate its services node {spec.services.name}"))
    for loc, step in scenario.walk():
        if step.checkpoint is not None:
            found.append((scenario.line_of(loc + ("checkpoint",)),
                          f"checkpoints are not supported on sim lab {spec.name}"))
    return sorted(found, key=lambda problem: (problem[0] is None, problem[0] or 0))  # in file order
