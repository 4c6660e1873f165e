"""The scenario steps that break and heal things (fault, heal) and wait for an outcome
(wait), with failover and recovery measured from the guests' heartbeats.

A mixin of the scenario runner (`runner._ScenarioRun`): it strikes through the runner's
fault injector, asks its toolstack to recover lost hosts, and measures recovery from its
observer.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from typing import Any

from ..errors import WaitTimeout
from ..lab.contract import FaultInjector, Observer
from ..metrics import recovery_time
from ..results import Figure, HeartbeatTimeline
from ..toolstack.base import GuestSpec, Toolstack
from ..waiting import StopWaiting
from .failure import StepFailed
from .measure import HISTORY_S, failover_figures, heartbeat_timeline, recovery_words, round_or_none
from .model import HOST_LOSS_FAULTS, Condition, FaultStep, Step
from .struck import InjectedFault, fault_marks


class FaultSteps:
    """fault, heal and wait steps; the runner provides the attributes and helpers below."""

    toolstack: Toolstack
    observer: Observer
    faults: FaultInjector
    guests: dict[str, GuestSpec]
    injected: list[InjectedFault]
    active: dict[str, InjectedFault]
    recoveries: list[float]
    sleep: Callable[[float], None]
    _timelines: list[HeartbeatTimeline]
    info: Callable[[str, str], None]
    holds: Callable[[Condition, dict[str, Figure], dict], tuple[bool, str]]
    series_after: Callable[..., tuple[list[tuple[int, float]], float]]
    wait: Callable[[Callable[[], Any], str, float], Any]
    wait_until: Callable[[Step, dict, dict], str]

    def do_fault(self, step: Step, figures: dict, details: dict, substeps: list) -> str:
        fault = self.inject(step.fault, details)
        on = f"; guests there: {', '.join(fault.guests)}" if fault.guests else ""
        return f"{fault.kind} on {', '.join(fault.targets)}{on}"

    def inject(self, a: FaultStep, details: dict) -> InjectedFault:
        """Strike a fault, remembering which guests stood on the hosts it takes away."""
        guests: dict[str, str] = {}
        if a.kind in HOST_LOSS_FAULTS:
            guests = {v.name: v.host for v in self.toolstack.vms()
                      if v.host in a.targets and v.state in ("running", "paused")}
        started = time.time()
        handle = self.faults.inject(a.kind, a.target, **a.params())
        fault = InjectedFault(a.label, a.kind, a.targets, handle, handle.started_at or started,
                              guests)
        self.injected.append(fault)
        self.active[a.label] = fault
        details.update(kind=a.kind, target=a.target, params=a.params(), started_at=fault.started_at,
                       guests_on_target=guests)
        return fault

    def do_heal(self, step: Step, figures: dict, details: dict, substeps: list) -> str:
        labels = list(reversed(self.active)) if step.heal == "all" else [step.heal]
        healed = []
        for label in labels:
            fault = self.active.get(label)
            if fault is None:
                raise StepFailed(f"no active fault named {label!r}")
            fault.heal()
            del self.active[label]
            healed.append(label)
        details["healed"] = healed
        return f"healed {', '.join(healed)}" if healed else "no active fault"

    def do_wait(self, step: Step, figures: dict, details: dict, substeps: list) -> str:
        a = step.wait
        if a.until is not None:  # a fact about a machine, through its shell (command_steps)
            return self.wait_until(step, figures, details)
        if a.for_ is None:
            self.sleep(a.seconds)
            return f"waited {a.seconds:g} s"
        condition = a.for_
        started = time.time()
        deadline = started + a.timeout
        fault = self.fault_for(condition)
        still_lost = fault is not None and self.active.get(fault.label) is fault  # a healed host is back
        if still_lost and condition.vm and fault.loses_hosts and condition.vm in fault.guests:
            self.fail_over(step, fault, fault.guests[condition.vm], figures, details)
        evidence = [""]
        unmeasurable = [False]

        def holds() -> bool:
            ok, evidence[0] = self.holds(condition, figures, details)
            if ok is None:  # this lab cannot tell: waiting longer would not change that
                unmeasurable[0] = True
                raise StopWaiting(evidence[0])
            return ok

        try:
            self.wait(holds, condition.describe(), max(1.0, deadline - time.time()))
        except WaitTimeout:
            if unmeasurable[0]:
                raise StepFailed(f"not measured: {condition.describe()}: {evidence[0]}", "not_measured") from None
            raise StepFailed(f"{condition.describe()}: not so after {a.timeout:g} s ({evidence[0]})") from None
        met_at = time.time()
        figures["duration"] = Figure(value=round(met_at - started, 3), unit="s")
        if fault is None:
            return f"{condition.describe()} after {met_at - started:.1f} s"
        since = met_at - fault.started_at
        figures["since_fault"] = Figure(value=round(since, 3), unit="s", note=f"since {fault.label}")
        if condition.kind == "host_dead":
            figures.setdefault("detection", Figure(value=round(since, 3), unit="s",
                                                   note=f"{condition.host_dead} seen dead, since {fault.label}"))
        if condition.vm is not None:
            self.measure_recovery(condition.vm, fault, max(1.0, deadline - time.time()), figures, details)
        return f"{condition.describe()} {since:.1f} s after {fault.label}" + recovery_words(figures)

    def fault_for(self, condition: Condition) -> InjectedFault | None:
        """The fault a wait is about: the newest that struck its host or guest, else the newest active."""
        for fault in reversed(self.injected):
            if (condition.host and condition.host in fault.targets) or (condition.vm and condition.vm in fault.guests):
                return fault
        return next(reversed(self.active.values()), None)

    def fail_over(self, step: Step, fault: InjectedFault, lost_host: str, figures: dict, details: dict) -> None:
        """Ask the toolstack to recover the lost host's guests, once per host and fault."""
        if lost_host in fault.failover:
            failover_figures(fault.failover[lost_host], figures)
            return
        self.info(step.title, f"recovering the guests of {lost_host}")
        result = self.toolstack.recover(lost_host, fault.started_at, self.observer)
        if result is None:
            figures["detection"] = Figure(value=None, unit="s", note=f"the {self.toolstack.kind} pool restarts guests "
                                                                     "by itself; wait for host_dead to measure it")
            return
        fault.failover[lost_host] = result
        details["failover"] = asdict(result)
        failover_figures(result, figures)
        if not result.ok:
            raise StepFailed(f"failover of {lost_host} failed: {result.error}")

    def measure_recovery(self, vm: str, fault: InjectedFault, timeout: float, figures: dict, details: dict) -> None:
        guest = self.guests.get(vm)
        if guest is not None and not guest.heartbeat:
            figures["recovery"] = Figure(value=figures["since_fault"].value, unit="s",
                                         note=f"{vm} sends no heartbeats: until the condition held")
            return

        def back(series: Sequence[tuple[int, float]]) -> bool:
            return recovery_time(series, fault.started_at, until=time.time()).seconds is not None

        series, read_at = self.series_after(vm, back, timeout, f"heartbeats of {vm} to come back after {fault.label}",
                                            since=fault.started_at - HISTORY_S)
        recovery = recovery_time(series, fault.started_at, until=read_at)
        self._timelines.append(heartbeat_timeline(
            vm, f"{fault.label}: {fault.kind} on {', '.join(fault.targets)}", series, read_at, fault.started_at,
            fault.started_at, fault_marks(fault, recovery.resumed_at),
            (recovery.stopped_at, recovery.resumed_at) if recovery.stopped_at is not None else (None, None),
            recovery.restarted, recovery.reason))
        figures["recovery"] = Figure(value=round_or_none(recovery.seconds), unit="s",
                                     note=recovery.reason or ("the guest restarted" if recovery.restarted else ""))
        if recovery.seconds is not None:
            self.recoveries.append(recovery.seconds)
            for result in fault.failover.values():
                if vm in result.restarted:
                    result.heartbeat_back_after_s[vm] = recovery.seconds
                    details["failover"] = asdict(result)
        details["recovery"] = asdict(recovery)
