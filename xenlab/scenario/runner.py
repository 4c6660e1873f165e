"""Runs a scenario: each step becomes toolstack calls, faults and waits, timed and measured.

The runner is handed everything it acts on (`xenlab.drivers` builds them for a lab), so
it holds no lab topology and can be run against fakes:

- `toolstack`: a `xenlab.toolstack.base.Toolstack`; its `recover(dead_host, fault_at,
  observer)` is called once per lost host when a step waits for one of that host's
  guests (an xl pool fails over only when told; an HA pool returns what its HA did);
- `observer` (`xenlab.lab.contract.Observer`): the guests' heartbeats and disk records,
  with receive times on this process's clock;
- `faults` (`FaultInjector`): injects a fault and returns a handle that heals it;
- `lab` (`CheckpointingLab`, may be None): its name, checkpoint steps, and its machines'
  shells for `run` and `wait: until` steps (`command_steps.shell_of`).

Only the runner measures: downtime, recovery and integrity come from the observer,
never from a driver's own account.

A step that fails (its action, a condition or an expectation) stops the scenario; the
later steps are recorded as skipped. A step that did its work but could not measure or
judge something it was asked to (integrity on a lab that cannot read disks, a bound with
no value for this accelerator) is `not_measured`: the run goes on, and the scenario ends
not_measured, never passed. Faults still active at the end are always healed.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from typing import Any, Protocol

from ..errors import NotMeasurable, WaitTimeout, XenlabError
from ..lab.contract import FaultInjector, Observer
from ..metrics import IntegrityReport, summarize
from ..results import (
    ExpectationResult,
    Figure,
    HeartbeatTimeline,
    Outcome,
    ScenarioResult,
    StepResult,
    combined_outcome,
)
from ..toolstack.base import GuestSpec, MigrationResult, PoolRefused, PoolSettings, Toolstack
from ..waiting import wait_for
from .command_steps import CommandSteps
from .failure import StepFailed
from .fault_steps import FaultSteps
from .measure import (
    figures_line,
    merge_integrity,
    round_or_none,
)
from .migration_steps import MigrationSteps
from .model import FIGURES, Condition, Scenario, Step
from .struck import InjectedFault

EventCallback = Callable[[int, str, str, str], None]  # (step index, step name, phase, message)
HEARTBEAT_FRESH_S = 2.0  # a guest whose last heartbeat is older than this (when asked) is not sending
# An assertion that a guest is heard gives it this long to be heard after the check begins:
# on a busy TCG machine the services node's log read and the guest itself lag by seconds
# (2.6 s seen in README's first command with a CPU-bound process alongside, 2026-12-04),
# while a guest that stopped sending stays silent however long one waits.
HEARTBEAT_GRACE_S = 10.0


class CheckpointingLab(Protocol):
    name: str

    def checkpoint_save(self, tag: str) -> float: ...

    def checkpoint_restore(self, tag: str) -> float: ...


def run_scenario(scenario: Scenario, lab: CheckpointingLab | None, toolstack: Toolstack, observer: Observer,
                 faults: FaultInjector, on_event: EventCallback | None = None, *, poll_s: float = 1.0,
                 shared_sr: str | None = None, sleep: Callable[[float], None] = time.sleep, accel: str = "",
                 keep_going: bool = False) -> ScenarioResult:
    """Run every step of `scenario` and return its timed, measured result (never raises for a
    failing step; a KeyboardInterrupt ends the run as an error after healing faults).

    `shared_sr`: where the lab's shared SR is (its services node's export), if not the default.
    `accel` (tcg, kvm, ...) picks the bound of per-accelerator expectations. With
    `keep_going`, a step that did its work but missed an expectation does not stop the run
    (benchmarks measure every figure and report the misses beside them)."""
    return _ScenarioRun(scenario, lab, toolstack, observer, faults, on_event, poll_s, shared_sr, sleep, accel,
                        keep_going).run()


class _ScenarioRun(MigrationSteps, FaultSteps, CommandSteps):
    def __init__(self, scenario: Scenario, lab: CheckpointingLab | None, toolstack: Toolstack, observer: Observer,
                 faults: FaultInjector, on_event: EventCallback | None, poll_s: float, shared_sr: str | None,
                 sleep: Callable[[float], None], accel: str = "", keep_going: bool = False):
        self.scenario, self.lab, self.toolstack = scenario, lab, toolstack
        self.shared_sr = shared_sr
        self.accel, self.keep_going = accel, keep_going
        self._only_missed: set[int] = set()  # id() of step results that failed only on expectations
        self.observer, self.faults = observer, faults
        self.on_event = on_event or (lambda index, name, phase, message: None)
        self.poll_s, self.sleep = poll_s, sleep
        self.guests: dict[str, GuestSpec] = {}
        self.injected: list[InjectedFault] = []
        self.active: dict[str, InjectedFault] = {}
        self.migrations: list[MigrationResult] = []
        self.recoveries: list[float] = []
        self._index = 0
        self._timelines: list[HeartbeatTimeline] = []  # of the step running now

    # -- the whole scenario ----------------------------------------------------------
    def run(self) -> ScenarioResult:
        started = time.time()
        steps: list[StepResult] = []
        stopped: StepResult | None = None
        try:
            for index, step in enumerate(self.scenario.steps):
                if stopped is not None:
                    steps.append(self.skipped(index, step))
                    continue
                result = self.run_step(index, step)
                steps.append(result)
                if self.stops(result):
                    stopped = result
        finally:
            cleanup = self.cleanup(len(steps))
        if cleanup is not None:
            steps.append(cleanup)
        outcome: Outcome = combined_outcome([s.outcome for s in steps if s.outcome != "skipped"] or ["skipped"])
        summary, series = self.summary()
        return ScenarioResult(name=self.scenario.name, file=self.scenario.path,
                              lab=self.lab.name if self.lab is not None else "", toolstack=self.toolstack.kind,
                              started_at=started, ended_at=time.time(), outcome=outcome, steps=steps,
                              summary=summary, series=series)

    def skipped(self, index: int, step: Step) -> StepResult:
        now = time.time()
        self.on_event(index, step.title, "skipped", "an earlier step failed")
        return StepResult(index=index, name=step.title, kind=step.kind, started_at=now, ended_at=now,
                          outcome="skipped", message="an earlier step failed")

    def cleanup(self, index: int) -> StepResult | None:
        """Heal whatever the scenario left broken, newest first, whatever happened before."""
        if not self.active:
            return None
        labels = list(self.active)
        name = f"cleanup: heal {', '.join(labels)}"
        started = time.time()
        self.on_event(index, name, "start", "")
        problems = []
        for label in reversed(labels):
            try:
                self.active[label].heal()
                del self.active[label]
            except Exception as exc:  # noqa: BLE001 - every fault gets its chance to heal
                problems.append(f"{label}: {type(exc).__name__}: {exc}")
        outcome: Outcome = "error" if problems else "passed"
        message = "; ".join(problems) or f"healed {len(labels)} fault(s)"
        self.on_event(index, name, outcome, message)
        return StepResult(index=index, name=name, kind="heal", started_at=started, ended_at=time.time(),
                          outcome=outcome, message=message, details={"healed": labels})

    # -- one step --------------------------------------------------------------------
    def run_step(self, index: int, step: Step, title: str | None = None) -> StepResult:
        title = title or step.title
        self._index = index
        started = time.time()
        self.on_event(index, title, "start", "")
        figures: dict[str, Figure] = {}
        details: dict[str, Any] = {}
        substeps: list[StepResult] = []
        outcome: Outcome = "passed"
        message = ""
        outer, self._timelines = self._timelines, []  # a repeat's substeps keep their own
        timelines = self._timelines
        try:
            handler = getattr(self, f"do_{step.kind}")
            message = handler(step, figures, details, substeps) or ""
        except StepFailed as exc:
            outcome, message = exc.outcome, str(exc)
        except XenlabError as exc:  # the pool or the lab did not do what was asked (PoolRefused included)
            outcome, message = "failed", str(exc)
        except KeyboardInterrupt:
            outcome, message = "error", "interrupted"
        except Exception as exc:  # noqa: BLE001 - a harness bug must still end in a result and a cleanup
            outcome, message = "error", f"{type(exc).__name__}: {exc}"
        finally:
            self._timelines = outer
        ended = time.time()
        figures.setdefault("duration", Figure(value=round(ended - started, 3), unit="s"))
        expectations = self.check(step, figures)
        missed = [e.message for e in expectations if e.verdict == "failed"]
        unmeasured = [e.message for e in expectations if e.verdict == "not_measured"]
        only_missed = False
        if missed and outcome in ("passed", "not_measured"):
            outcome, message, only_missed = "failed", "; ".join(missed), True
        elif unmeasured and outcome in ("passed", "not_measured"):
            outcome = "not_measured"
            message = "; ".join(([message] if message else []) + [f"not measured: {m}" for m in unmeasured])
        self.on_event(index, title, outcome, message or figures_line(figures))
        result = StepResult(index=index, name=title, kind=step.kind, started_at=started, ended_at=ended,
                            outcome=outcome, figures=figures, expectations=expectations, message=message,
                            details=details, substeps=substeps, timelines=timelines)
        if only_missed or (substeps and all(id(s) in self._only_missed for s in substeps if s.outcome == "failed")
                           and outcome == "failed" and self.keep_going):
            self._only_missed.add(id(result))
        return result

    def stops(self, result: StepResult) -> bool:
        """Whether the run ends after this step: it went wrong, or (unless keep_going) missed
        an expectation. A step that could not measure something goes on: what follows may."""
        if result.outcome in ("passed", "not_measured"):
            return False
        return not (self.keep_going and id(result) in self._only_missed)

    def check(self, step: Step, figures: dict[str, Figure]) -> list[ExpectationResult]:
        results = []
        for name, expectation in step.expect.items():
            figure = figures.get(name) or Figure(value=None, unit=FIGURES[step.kind].get(name, ""),
                                                 note="this step did not measure it")
            results.append(expectation.evaluate(name, figure, self.accel))
        return results

    def info(self, title: str, message: str) -> None:
        self.on_event(self._index, title, "info", message)

    # -- step kinds --------------------------------------------------------------------
    def do_form_pool(self, step: Step, figures: dict, details: dict, substeps: list) -> str:
        a = step.form_pool
        settings = self.pool_settings()
        remaining = list(a.members)
        refused: dict[str, str] = {}
        started = time.time()
        while True:
            try:
                pool = self.toolstack.form_pool(remaining, settings)
                break
            except PoolRefused as exc:
                wanted = a.expect_refused.get(exc.host)
                if wanted is None or exc.host not in remaining:
                    raise StepFailed(f"{exc.host} was refused from the pool: {exc.reason}") from None
                if wanted.lower() not in exc.reason.lower():
                    raise StepFailed(f"{exc.host} was refused for {exc.reason!r}, expected a reason "
                                     f"containing {wanted!r}") from None
                refused[exc.host] = exc.reason
                remaining.remove(exc.host)
                self.info(step.title, f"{exc.host} refused as expected: {exc.reason}")
                if not remaining:
                    pool = None
                    break
        figures["duration"] = Figure(value=round(time.time() - started, 3), unit="s")
        figures["members"] = Figure(value=len(pool.members) if pool else 0, unit="count")
        figures["refused"] = Figure(value=len(refused), unit="count")
        details.update(pool=asdict(pool) if pool else None, refused=refused)
        joined = [h for h in a.expect_refused if h not in refused]
        if joined:
            raise StepFailed(", ".join(f"{h} joined, but should have been refused ({a.expect_refused[h]!r})"
                                       for h in joined))
        return f"pool {pool.name} of {', '.join(pool.members)} (master {pool.master})" if pool else "no pool"

    def pool_settings(self) -> PoolSettings:
        p = self.scenario.pool
        kwargs: dict[str, Any] = {"name": p.name, "detection_timeout_s": p.detection_timeout_s,
                                  "protected": self.scenario.protected_guests()}
        if self.shared_sr is not None:
            kwargs["shared_sr"] = self.shared_sr
        return PoolSettings(**kwargs)

    def do_create_vm(self, step: Step, figures: dict, details: dict, substeps: list) -> str:
        a = step.create_vm
        guest = GuestSpec(name=a.name, memory_mib=a.memory_mib, vcpus=a.vcpus, disk_mib=a.disk_mib,
                          heartbeat=a.heartbeat, writer=a.writer, type=a.type)
        started = time.time()
        info = self.toolstack.create_vm(guest, a.host)
        figures["duration"] = Figure(value=round(time.time() - started, 3), unit="s")
        self.guests[a.name] = guest
        details["vm"] = asdict(info)
        if info.state != "running":
            raise StepFailed(f"{a.name} is {info.state} on {info.host} after it was created")
        if not a.heartbeat:
            figures["first_heartbeat"] = Figure(value=None, unit="s", note="the guest sends no heartbeats")
            return f"{a.name} running on {info.host}"
        self.info(step.title, f"{a.name} running on {info.host}; waiting for its first heartbeat")
        first = self.wait(lambda: min((at for _, at in self.heartbeats(a.name, started)), default=None),
                          f"the first heartbeat of {a.name}", a.ready_timeout_s)
        figures["first_heartbeat"] = Figure(value=round(first - started, 3), unit="s")
        return f"{a.name} running on {info.host}, heard {first - started:.1f} s after its creation started"

    def do_destroy_vm(self, step: Step, figures: dict, details: dict, substeps: list) -> str:
        vm = step.destroy_vm
        self.toolstack.destroy_vm(vm)
        self.guests.pop(vm, None)
        return f"{vm} destroyed, its disk with it"

    def series_after(self, vm: str, enough: Callable[[Sequence[tuple[int, float]]], bool], timeout: float,
                     what: str, since: float) -> tuple[list[tuple[int, float]], float]:
        """The guest's heartbeats once `enough` holds for them (or as they are at the timeout),
        and when they were read (a silence after the last one lasted at least until then)."""
        latest: list[list[tuple[int, float]]] = [[]]
        read_at = [time.time()]

        def ready() -> bool:
            latest[0] = self.heartbeats(vm, since)
            read_at[0] = time.time()
            return enough(latest[0])

        try:
            self.wait(ready, what, timeout)
        except WaitTimeout:
            pass  # measured as it is: the metrics say what is missing
        return latest[0], read_at[0]

    def integrity(self, vm: str, figures: dict[str, Figure]) -> IntegrityReport | None:
        guest = self.guests.get(vm)
        if guest is not None and not guest.writer:
            figures["integrity"] = Figure(value=None, unit="bool", note=f"{vm} writes no records")
            figures["records"] = Figure(value=None, unit="count", note=f"{vm} writes no records")
            return None
        try:
            report = self.observer.verify_disk(vm)
        except NotMeasurable as exc:
            figures["integrity"] = Figure(value=None, unit="bool", note=str(exc), measurable=False)
            figures["records"] = Figure(value=None, unit="count", note=str(exc), measurable=False)
            return None
        figures["integrity"] = Figure(value=1.0 if report.ok else 0.0, unit="bool", note=report.reason)
        figures["records"] = Figure(value=report.records, unit="count")
        return report

    def do_assert(self, step: Step, figures: dict, details: dict, substeps: list) -> str:
        failures, unmeasured = [], []
        for condition in step.assert_:
            ok, evidence = self.holds(condition, figures, details, grace_s=HEARTBEAT_GRACE_S)
            if ok is None:
                unmeasured.append(f"{condition.describe()}: {evidence}")
            elif not ok:
                failures.append(f"{condition.describe()}: {evidence}")
        if failures:
            raise StepFailed("; ".join(failures + [f"not measured: {u}" for u in unmeasured]))
        if unmeasured:
            raise StepFailed("; ".join(f"not measured: {u}" for u in unmeasured), "not_measured")
        return "all hold"

    def holds(self, condition: Condition, figures: dict[str, Figure], details: dict,
              grace_s: float = 0.0) -> tuple[bool | None, str]:
        """Whether `condition` holds now (None: this lab cannot tell), and the evidence either way.

        `grace_s`: how long a guest may take to be heard after the check begins (an
        assertion's one look; a wait polls anyway)."""
        try:
            match condition.kind:
                case "vm_running" | "vm_on":
                    vm = condition.vm
                    found = [v for v in self.toolstack.vms() if v.name == vm]
                    if not found:
                        return False, f"no guest {vm!r} in the pool"
                    active = [v for v in found if v.state in ("running", "paused")]
                    if len(active) > 1:  # a split brain: the same guest on two hosts
                        return False, f"{vm} runs {len(active)} times: on {', '.join(v.host for v in active)}"
                    where = "; ".join(f"{v.name} is {v.state} on {v.host}" for v in found)
                    if condition.kind == "vm_running":
                        return bool(active) and active[0].state == "running", where
                    return bool(active) and active[0].host == condition.vm_on.host, where
                case "host_dead" | "host_alive":
                    host = condition.host
                    alive = self.toolstack.host_alive(host)
                    return alive == (condition.kind == "host_alive"), f"{host} {'answers' if alive else 'is silent'}"
                case "heartbeats":
                    return self.heard(condition.heartbeats, grace_s)
                case _:
                    vm = condition.data_intact
                    one: dict[str, Figure] = {}
                    report = self.integrity(vm, one)
                    merge_integrity(figures, one)
                    details.setdefault("integrity", {})[vm] = asdict(report) if report else None
                    if report is not None:
                        for fault in self.injected:  # the runner, not the driver, measures a failover's guests
                            for failover in fault.failover.values():
                                if vm in failover.restarted:
                                    failover.integrity_ok[vm] = report.ok
                    if report is None:
                        return (None if not one["integrity"].measurable else False), one["integrity"].note
                    return report.ok, report.reason or f"{report.records} records intact"
        except XenlabError as exc:
            return False, str(exc)

    def do_repeat(self, step: Step, figures: dict, details: dict, substeps: list) -> str:
        a = step.repeat
        first_migration = len(self.migrations)
        done = 0
        try:
            for round_ in range(1, a.times + 1):
                for sub in a.steps:
                    result = self.run_step(self._index, sub, f"{sub.title} ({round_}/{a.times})")
                    result.index = len(substeps)
                    substeps.append(result)
                    if self.stops(result):
                        raise StepFailed(f"round {round_}/{a.times}, {sub.title}: {result.message}", result.outcome)
                done = round_
            missed = [s for s in substeps if s.outcome == "failed"]
            if missed:  # keep_going: every round ran; the repeat reports its misses
                raise StepFailed(f"{len(missed)} of {len(substeps)} steps missed an expectation: "
                                 f"{missed[0].name}: {missed[0].message}")
            unmeasured = [s for s in substeps if s.outcome == "not_measured"]
            if unmeasured:
                raise StepFailed(f"{len(unmeasured)} of {len(substeps)} steps could not measure everything: "
                                 f"{unmeasured[0].name}: {unmeasured[0].message}", "not_measured")
        finally:
            figures["iterations"] = Figure(value=done, unit="count")
            moved = self.migrations[first_migration:]
            figures["migrations"] = Figure(value=len(moved), unit="count")
            downtimes = [m.downtime_s for m in moved]
            stats = summarize(downtimes)
            for key in ("p50", "p90", "max", "mean"):
                figures[f"downtime_{key}"] = Figure(value=round_or_none(stats[key]), unit="s",
                                                    note="" if stats["count"] else "no downtime was measured")
            lost = [m.heartbeats_lost for m in moved if m.heartbeats_lost is not None]
            figures["heartbeats_lost"] = Figure(value=sum(lost) if lost else None, unit="count",
                                                note="" if lost else "no migration was measured")
        return f"{done} rounds" + (f", downtime p50 {stats['p50']:.2f} s, max {stats['max']:.2f} s"
                                   if stats["count"] else "")

    def do_checkpoint(self, step: Step, figures: dict, details: dict, substeps: list) -> str:
        a = step.checkpoint
        if self.lab is None:
            raise StepFailed("checkpoints need a lab, and this run has none")
        if a.save is not None:
            seconds = self.lab.checkpoint_save(a.save)
            figures["duration"] = Figure(value=round(seconds, 3), unit="s")
            return f"saved {a.save} in {seconds:.2f} s"
        seconds = self.lab.checkpoint_restore(a.restore)
        figures["duration"] = Figure(value=round(seconds, 3), unit="s")
        return f"restored {a.restore} in {seconds:.2f} s"

    # -- helpers -----------------------------------------------------------------------
    def heard(self, vm: str, grace_s: float) -> tuple[bool, str]:
        """Whether `vm` is sending: a heartbeat at most HEARTBEAT_FRESH_S before the check
        began, or one received after it within `grace_s` (ages count from the check's
        start, not from the end of a slow read)."""
        asked_at = time.time()

        def newest() -> float | None:
            times = [at for _, at in self.heartbeats(vm, asked_at - 60)]
            return max(times) if times else None

        last = newest()
        if last is not None and asked_at - last <= HEARTBEAT_FRESH_S:
            return True, f"last heartbeat {asked_at - last:.1f} s before the check"
        if grace_s > 0:
            try:
                last = self.wait(lambda: (n := newest()) is not None and n >= asked_at and n,
                                 f"a heartbeat from {vm}", grace_s)
                return True, f"heard {last - asked_at:.1f} s after the check began"
            except WaitTimeout:
                last = newest()
        if last is None:
            return False, "no heartbeat received in the last minute"
        waited = f" (and none in the {grace_s:g} s after)" if grace_s > 0 else ""
        return False, f"last heartbeat {asked_at - last:.1f} s before the check{waited}"

    def heartbeats(self, vm: str, since: float) -> list[tuple[int, float]]:
        """The guest's heartbeats from `since` on."""
        return [(seq, at) for seq, at in self.observer.heartbeats(vm, since=since) if at >= since]

    def wait(self, predicate: Callable[[], Any], what: str, timeout: float) -> Any:
        return wait_for(predicate, what, timeout, self.poll_s)

    def summary(self) -> tuple[dict[str, Figure], dict[str, list[float]]]:
        """Distribution figures over every migration and recovery of the run, and the raw series."""
        summary: dict[str, Figure] = {}
        series: dict[str, list[float]] = {}
        downtimes = [m.downtime_s for m in self.migrations if m.downtime_s is not None]
        durations = [m.duration_s for m in self.migrations]
        if self.migrations:
            summary["migrations"] = Figure(value=len(self.migrations), unit="count")
            series["migration_duration"] = [round(d, 3) for d in durations]
            for key, value in summarize(durations).items():
                if key != "count":
                    summary[f"migration_duration_{key}"] = Figure(value=round_or_none(value), unit="s")
        if downtimes:
            series["downtime"] = [round(d, 3) for d in downtimes]
            for key, value in summarize(downtimes).items():
                if key != "count":
                    summary[f"downtime_{key}"] = Figure(value=round_or_none(value), unit="s")
            lost = [m.heartbeats_lost for m in self.migrations if m.heartbeats_lost is not None]
            summary["heartbeats_lost"] = Figure(value=sum(lost), unit="count")
        if self.recoveries:
            series["recovery"] = [round(r, 3) for r in self.recoveries]
            summary["recovery_max"] = Figure(value=round_or_none(max(self.recoveries)), unit="s")
        return summary, series
