"""Faults a scenario struck: what stood on their targets, a strike timed into a migration
call, and their moments as marks on a guest's heartbeat timeline."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..lab.contract import FaultHandle
from ..toolstack.base import FailoverResult
from .model import HOST_LOSS_FAULTS, FaultStep

ActiveFault = FaultHandle  # the name scenarios have always used for a fault's handle


class Striker(Protocol):
    """What a strike needs of the run: inject and report a fault, sleep, forget a healed one."""

    active: dict[str, InjectedFault]

    def inject(self, a: FaultStep, details: dict) -> InjectedFault: ...

    def info(self, title: str, message: str) -> None: ...

    def sleep(self, seconds: float) -> None: ...


@dataclass
class InjectedFault:
    """A fault the scenario injected, and what was on its targets when it struck."""

    label: str
    kind: str
    targets: list[str]
    handle: ActiveFault
    started_at: float
    guests: dict[str, str] = field(default_factory=dict)  # guest -> host, on the targets at injection
    failover: dict[str, FailoverResult] = field(default_factory=dict)  # lost host -> what recover() did
    healed_at: float | None = None

    def heal(self) -> None:
        self.handle.heal()
        self.healed_at = time.time()

    @property
    def loses_hosts(self) -> bool:
        return self.kind in HOST_LOSS_FAULTS


class StrikeDuring:
    """Injects a scenario's fault on a timer while the runner is busy in a migration call."""

    def __init__(self, run: Striker, fault: FaultStep, after_s: float, heal_after_s: float | None):
        self.run, self.spec, self.after_s, self.heal_after_s = run, fault, after_s, heal_after_s
        self.fault: InjectedFault | None = None
        self.healed = False
        self.error: str | None = None
        self.details: dict[str, Any] = {"after_s": after_s, "heal_after_s": heal_after_s}
        self._stopped = threading.Event()
        self._launched = threading.Event()
        self._thread = threading.Thread(target=self._strike, name=f"strike {fault.label}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def launched(self) -> None:
        """The migration itself has just been launched: `after_s` counts from now."""
        self._launched.set()

    def stop(self) -> None:
        """The migration returned: a strike not yet due is called off; a due heal still happens."""
        self._stopped.set()
        self._launched.set()
        self._thread.join()

    def _strike(self) -> None:
        self._launched.wait()  # the driver's lookups before the launch do not count
        if self._stopped.wait(self.after_s):
            return  # the migration ended first
        try:
            self.fault = self.run.inject(self.spec, self.details)
            self.run.info("during migration", f"{self.spec.label} struck")
            if self.heal_after_s is None:
                return
            self.run.sleep(self.heal_after_s)  # due whether or not the migration has returned by then
            self.fault.heal()
            self.run.active.pop(self.fault.label, None)
            self.healed = True
        except Exception as exc:  # noqa: BLE001 - reported by the step, and healed by cleanup if active
            self.error = f"{type(exc).__name__}: {exc}"


def fault_marks(fault: InjectedFault, resumed_at: float | None) -> list[tuple[float, str]]:
    """The moments of a fault worth a line on a guest's timeline: struck, detected, fenced, healed, back."""
    marks = [(fault.started_at, f"{fault.kind} struck")]
    for result in fault.failover.values():
        for after, what in ((result.detected_after_s, "detected"), (result.fenced_after_s, "fenced")):
            if after is not None:
                marks.append((result.fault_at + after, f"{result.failed_host} {what}"))
    if fault.healed_at is not None:
        marks.append((fault.healed_at, f"{fault.label} healed"))
    if resumed_at is not None:
        marks.append((resumed_at, "recovered"))
    return marks
