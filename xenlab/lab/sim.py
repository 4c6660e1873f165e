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
from typing import TYPE_CHECKING, Any, Self

import XenAPI

from ..errors import NotMeasurable, XenlabError
from ..metrics import IntegrityReport
from ..recipe_facts import GUEST_TYPES
from ..results import HostInventory
from ..spec import SR_PATH, LabSpec, SimSpec
from ..waiting import Progress, quiet
from .contract import ActiveFault, Capabilities, LabHost, XapiAccess
from .xapi_login import inventory_of

if TYPE_CHECKING:
    from ..sim.server import SimServer

MiB = 1024 * 1024
SIMULATED_FAULTS = ("power_cut", "partition")  # a power cut kills a simulated host, a partition isolates it
SIM_CAPABILITIES = Capabilities(
    toolstack="xapi", fault_kinds=SIMULATED_FAULTS, checkpoints=False,
    integrity_measurable=False,  # a simulated guest writes nothing to its disk
    services_faults=False,  # the services node only names the SR's NFS server
    poll_s=0.1,  # a simulated pool answers in milliseconds: the runner may look often
    outlives_process=False,  # the simulator runs in this process
    guest_types=GUEST_TYPES)  # a simulated host starts any guest type, as xapi would
ACCEL = "sim"


class SimLabHost(LabHost):
    """A simulated host as the lab names it: its xapi address and URL, and its power
    (the simulator's: off kills the host and its domains, on boots it back into the pool).
    It has no shell, console or cable: those verbs say so (`Unsupported`)."""

    capabilities = frozenset({"power"})

    def __init__(self, lab: SimLab, name: str, address: str, url: str):
        self.lab, self.name, self.address, self.url = lab, name, address, url

    def __repr__(self) -> str:
        return f"<SimLabHost {self.name} of lab {self.lab.name} at {self.url}>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SimLabHost) and (other.lab, other.name) == (self.lab, self.name)

    def __hash__(self) -> int:
        return hash((id(self.lab), self.name))

    def lacks(self, capability: str) -> str:
        return {"shell": "a simulated host is an xapi endpoint in this process, with no dom0 to run commands in",
                "console": "a simulated host has no console",
                "link": "a simulated host has no NIC to unplug (a `partition` fault isolates it)"
                }.get(capability, super().lacks(capability))

    def power(self, action: str) -> None:
        """off (the plug: the host and its domains die, the pool's HA notices), on (it boots
        back and rejoins), reset (off then on)."""
        control = self.lab.running.control
        index = self.lab.index_of(self.name)
        if action not in ("off", "on", "reset"):
            raise XenlabError(f"a simulated host powers off, on or reset, not {action!r}")
        if action in ("off", "reset"):
            control.kill_host(index)
        if action in ("on", "reset"):
            control.heal(index)

    def wait_ready(self, timeout: float = 300, progress=lambda host, stage: None) -> dict[str, float]:
        """A simulated host is ready once its xapi answers, which it does as soon as it is on."""
        return {}


class SimLab:
    """A lab of simulated xapi hosts (a LabBackend); lab host i is simulated host i."""

    capabilities = SIM_CAPABILITIES
    accel = ACCEL

    def __init__(self, spec: LabSpec, spec_path: str = ""):
        if spec.backend != "sim":
            raise XenlabError(f"lab {spec.name} is a {spec.backend} lab, not a sim lab")
        self.spec, self.spec_path, self.name = spec, spec_path, spec.name
        self.model = spec.sim or SimSpec()
        self.password = secrets.token_urlsafe(16)
        self.server: SimServer | None = None
        self.names = list(spec.hosts)
        self.bringup_stages: dict[str, dict[str, float]] = {}

    # lifecycle -----------------------------------------------------------------------
    def up(self, progress: Progress = quiet, accel: str | None = None, tied: bool = False,
           timeout: float = 600) -> dict[str, dict[str, float]]:
        """Start the simulator (accel, tied and timeout mean nothing to an in-process pool)."""
        from ..sim.server import SimServer

        if self.server is not None:
            return self.bringup_stages
        first = next(iter(self.spec.hosts.values()))
        self.server = SimServer(hosts=len(self.names), password=self.password, realtime=True,
                                host_memory=first.memory_mib * MiB, dom0_memory=first.dom0_memory_mib * MiB,
                                time_scale=self.model.time_scale, guest_boot_s=self.model.guest_boot_s,
                                switchover_s=self.model.switchover_pause_s).start()
        for name in self.names:
            host = self.host(name)
            progress(name, f"simulated xapi {host.address} at {host.url}")
        return self.bringup_stages

    def down(self) -> list[int]:
        server, self.server = self.server, None
        if server is not None:
            server.stop()
        return []  # no process of its own: the simulator's threads end with it

    def __enter__(self) -> Self:
        self.up()
        return self

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
        return SimLabHost(self, name, simulated.address, server.url_for(simulated.index))

    @property
    def hosts(self) -> list[SimLabHost]:
        return [self.host(n) for n in self.names]

    @property
    def machines(self) -> dict[str, Any]:
        """No machine with a console or a shell: the hosts are xapi endpoints in this process."""
        return {}

    # what the scenario layer asks for -------------------------------------------------
    def xapi_access(self) -> XapiAccess:
        server = self.running
        services = self.spec.services
        return XapiAccess(addresses={h.name: h.address for h in self.hosts}, url_for=server.url_for,
                          user=server.deployment.user, password=self.password,
                          nfs_server=services.name if services else "services",
                          nfs_path=services.nfs_export if services else SR_PATH)

    def faults(self) -> SimFaults:
        return SimFaults(self)

    def observer(self) -> SimObserver:
        return SimObserver(self)

    def checkpoint_tags(self) -> list[str]:
        return []

    def checkpoint_save(self, tag: str) -> float:
        raise XenlabError(f"checkpoints are not supported on sim lab {self.name}")

    def checkpoint_restore(self, tag: str) -> float:
        raise XenlabError(f"checkpoints are not supported on sim lab {self.name}")

    def inventory(self) -> list[HostInventory]:
        """Each simulated host as its xapi reports it (host and host_metrics records, over XenAPI)."""
        server = self.running
        found = []
        for host in self.hosts:
            session = XenAPI.Session(host.url)
            session.xenapi.login_with_password(server.deployment.user, self.password, "1.0", "xenlab-inventory")
            try:
                x = session.xenapi
                refs = x.host.get_all()
                ref = next((r for r in refs if x.host.get_address(r) == host.address), refs[0] if refs else None)
                if ref is None:
                    found.append(HostInventory(name=host.name, accel=ACCEL))
                    continue
                record = x.host.get_record(ref)
                nics = [x.PIF.get_record(pif) for pif in record.get("PIFs", [])]
                found.append(inventory_of(host.name, record, x.host_metrics.get_record(x.host.get_metrics(ref)),
                                          [f"{n.get('device', '?')} {n.get('MAC', '')}".strip() for n in nics], ACCEL))
            finally:
                session.xenapi.session.logout()
        return found


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
        inflict = {"power_cut": control.kill_host, "partition": control.isolate_host}[kind]
        started = control.now()
        for index in indexes:
            inflict(index)

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
