"""The lab contract: what every kind of lab offers the layers above it.

A lab backend (QEMU machines in `xenlab.lab.lab`, the in-process simulator in
`xenlab.lab.sim`, static hosts later) is a `LabBackend`: a name and a spec, its hosts by
name, up/down, checkpoints (or a clear "not supported"), the host inventory its hosts can
report, and its `Capabilities`. A scenario is checked against the capabilities before
anything starts (`xenlab.scenario.session`), so no backend reads scenario syntax. Which
drivers (toolstack, observer, faults) serve a lab is decided in one place above the
drivers, `xenlab.drivers`, from the backend's declared `toolstack`.

The small protocols the drivers share (`Observer`, `FaultHandle`, `FaultInjector`) live
here too, below both the drivers and the runner that use them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol, get_args, runtime_checkable

from ..errors import XenlabError
from ..recipe_facts import DEFAULT_GUEST_TYPES
from ..waiting import Progress

if TYPE_CHECKING:
    from ..metrics import IntegrityReport
    from ..results import HostInventory
    from ..spec import LabSpec

READY = "ready"  # the checkpoint saved right after bring-up; every scenario starts from it
# What a bring-up's progress line says as a machine enters each readiness stage: the line
# is printed when the wait starts, so it names what is awaited, not what was reached.
AWAITING = {"boot": "booting (waiting for the console banner)", "ssh": "waiting for SSH",
            "toolstack": "waiting for the toolstack", "ready": "ready"}
FaultKind = Literal["power_cut", "freeze", "reset", "link_down", "impair", "partition", "storage_loss"]
FAULT_KINDS: tuple[str, ...] = get_args(FaultKind)
ToolstackKind = Literal["xl", "xapi"]


@dataclass(frozen=True)
class Capabilities:
    """What a lab can do, declared by its backend and checked before a scenario starts."""

    toolstack: ToolstackKind  # which driver speaks to its hosts
    fault_kinds: tuple[str, ...]  # faults it can inflict (a subset of FAULT_KINDS)
    checkpoints: bool  # whole-lab checkpoints (save/restore)
    integrity_measurable: bool  # guests' disk records can be read back
    services_faults: bool  # faults may target its services node
    poll_s: float = 1.0  # how often the runner may look (a simulator answers in milliseconds)
    outlives_process: bool = True  # stays up after the process that started it (QEMU), or not (in-process)
    guest_types: tuple[str, ...] = DEFAULT_GUEST_TYPES  # guest types every host of the lab can run
    heartbeats_collected: bool = True  # something collects guests' heartbeats (not so on an xapi rack without SSH)


@dataclass
class ActiveFault:
    """A fault a lab inflicted, and how to undo it (heal is idempotent)."""

    kind: str
    target: str | list[str]
    started_at: float  # time.time() when the fault took effect
    params: dict = field(default_factory=dict)
    _heal: Callable[[], None] | None = None
    healed_at: float | None = None

    @property
    def undoable(self) -> bool:
        return self._heal is not None

    def heal(self) -> None:
        """Undo the fault (idempotent); a reset has nothing to undo."""
        if self.healed_at is None:
            if self._heal is not None:
                self._heal()
            self.healed_at = time.time()


class FaultHandle(Protocol):
    kind: str
    target: str | list[str]
    started_at: float  # time.time() when the fault took effect

    def heal(self) -> None: ...


class FaultInjector(Protocol):
    def inject(self, kind: str, target: str | list[str], **params) -> FaultHandle: ...


class Observer(Protocol):
    """What the guests tell about themselves: heartbeats and disk records (measured by the runner)."""

    def heartbeats(self, vm: str, since: float | None = None) -> Sequence[tuple[int, float]]:
        """(seq, receive time) pairs from `vm` (from `since` on, if given); times on this process's clock."""

    def verify_disk(self, vm: str) -> IntegrityReport:
        """`xenlab.metrics.verify_records` of the guest's data disk as it is now (NotMeasurable if it cannot be)."""


@dataclass(frozen=True)
class XapiAccess:
    """How to reach one pool's xapi: what a lab whose toolstack is xapi provides to the driver."""

    addresses: dict[str, str]  # lab host name -> management address (as xapi names it in HOST_IS_SLAVE)
    url_for: Callable[[str], str]  # management address -> XML-RPC URL
    user: str
    password: str = field(repr=False)
    nfs_server: str  # the shared SR's NFS server and export
    nfs_path: str
    ssl_context: Any = field(default=None, repr=False, compare=False)  # https: the lab's TLS trust


HostCapability = Literal["shell", "power", "console", "link"]
HOST_CAPABILITIES: tuple[str, ...] = get_args(HostCapability)


class Unsupported(XenlabError):
    """A host was asked for something its lab cannot do; the message names the capability and why.

    The pytest plugin reports a test that meets one as skipped with this message: never a pass
    over nothing, never a traceback."""

    def __init__(self, host: str, lab: str, capability: str, why: str):
        super().__init__(f"{host} of lab {lab} has no {capability}: {why}")
        self.host, self.lab, self.capability, self.why = host, lab, capability, why


class LabHost:
    """One host of any lab, as tests and commands use it: the same verbs on every backend.

    A backend overrides what its hosts can do and lists it in `capabilities`; every other
    verb raises `Unsupported` naming the capability and why this lab lacks it (a simulated
    host has no shell, a real server has no cable xenlab can pull). Shell verbs live in
    `RemoteShell` (lab/ssh.py), which QEMU and static hosts share."""

    name: str
    capabilities: frozenset[str] = frozenset()

    @property
    def lab_name(self) -> str:
        return getattr(getattr(self, "lab", None), "name", "?")

    def can(self, capability: str) -> bool:
        return capability in self.capabilities

    def lacks(self, capability: str) -> str:
        """Why this host cannot do `capability` (a backend says more where it knows more)."""
        return {"shell": "xenlab reaches it through its toolstack only (no SSH)",
                "power": "it has no power control (no BMC or virtual machine monitor)",
                "console": "its console cannot be read from here",
                "link": "xenlab controls no switch port of it"}.get(capability, "not offered")

    def unsupported(self, capability: str) -> Unsupported:
        return Unsupported(self.name, self.lab_name, capability, self.lacks(capability))

    # -- shell (RemoteShell implements them) --------------------------------------------------
    def run(self, command: str, timeout: float = 60, input: bytes | None = None) -> Any:
        raise self.unsupported("shell")

    def succeed(self, command: str, timeout: float = 60, input: bytes | None = None) -> str:
        raise self.unsupported("shell")

    def fail(self, command: str, timeout: float = 60) -> str:
        raise self.unsupported("shell")

    # -- power, console, link -----------------------------------------------------------------
    def power(self, action: str) -> None:
        raise self.unsupported("power")

    def serial_tail(self, lines: int = 20) -> str:
        raise self.unsupported("console")

    def link(self, network: str, up: bool) -> None:
        raise self.unsupported("link")

    def wait_ready(self, timeout: float = 300, progress: Callable[[str, str], None] = lambda host, stage: None
                   ) -> dict[str, float]:
        raise self.unsupported("shell")


@runtime_checkable
class LabBackend(Protocol):
    """A lab of any kind, as the scenario session, the CLI and the pytest plugin see it."""

    name: str
    spec: LabSpec
    spec_path: str
    capabilities: Capabilities
    bringup_stages: dict[str, dict[str, float]]

    @property
    def hosts(self) -> Sequence[LabHost]:
        """Its hypervisor hosts (not a services node), in lab-file order."""

    @property
    def machines(self) -> Mapping[str, Any]:
        """Its machines with a console and a shell (hosts and services node; none for a simulator)."""

    @property
    def accel(self) -> str:
        """How its hosts run: kvm, tcg, or sim."""

    def up(self, progress: Progress = ..., accel: str | None = None, tied: bool = False,
           timeout: float = 600) -> dict[str, dict[str, float]]:
        """Bring every host to ready (everything started is stopped again on failure)."""

    def down(self) -> list[int]:
        """Stop everything of the lab; returns the pids stopped (none for in-process labs)."""

    def checkpoint_tags(self) -> list[str]:
        """Checkpoints the lab holds ([] when it cannot hold any)."""

    def checkpoint_save(self, tag: str) -> float: ...

    def checkpoint_restore(self, tag: str) -> float: ...

    def inventory(self) -> list[HostInventory]:
        """What each host is made of, as the host reports it."""


def not_supported(lab: str, what: str, kind: str) -> XenlabError:
    return XenlabError(f"{what} is not supported on {kind} lab {lab}")


# -- the `ready` checkpoint policy, in one place --------------------------------------
def save_ready(lab: LabBackend, progress: Progress) -> float | None:
    """Save `ready` right after bring-up, if the lab holds checkpoints; seconds taken.
    A QEMU lab's `up` saves it itself (a warm `up` restores it): then nothing is done."""
    if not lab.capabilities.checkpoints:
        return None
    if READY in lab.checkpoint_tags():
        return 0.0
    seconds = lab.checkpoint_save(READY)
    progress("lab", f"checkpoint {READY} saved in {seconds:.2f}s")
    return seconds


def restore_ready(lab: LabBackend, progress: Progress) -> float | None:
    """Back to `ready` before a scenario or an isolated test, if the lab has it; seconds taken."""
    if not lab.capabilities.checkpoints or READY not in lab.checkpoint_tags():
        return None
    seconds = lab.checkpoint_restore(READY)
    progress("lab", f"restored to its {READY} checkpoint in {seconds:.2f}s")
    return seconds
