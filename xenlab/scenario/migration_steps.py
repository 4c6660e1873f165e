"""The scenario steps that move guests (migrate, evacuate), and how a move is measured.

A mixin of the scenario runner (`runner._ScenarioRun`): it acts through the runner's
toolstack and observer and records into its migrations and heartbeat timelines.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from typing import Any

from ..metrics import IntegrityReport, downtime_around
from ..results import Figure, HeartbeatTimeline
from ..toolstack.base import GuestSpec, MigrationResult, Toolstack
from .failure import StepFailed
from .measure import HISTORY_S, combined, downtime_words, heartbeat_timeline, round_or_none
from .model import OTHER, Step
from .struck import StrikeDuring


class MigrationSteps:
    """migrate and evacuate steps; the runner provides the attributes and helpers below."""

    toolstack: Toolstack
    guests: dict[str, GuestSpec]
    migrations: list[MigrationResult]
    _timelines: list[HeartbeatTimeline]
    info: Callable[[str, str], None]
    integrity: Callable[[str, dict[str, Figure]], IntegrityReport | None]
    series_after: Callable[..., tuple[list[tuple[int, float]], float]]
    wait: Callable[[Callable[[], Any], str, float], Any]

    def do_migrate(self, step: Step, figures: dict, details: dict, substeps: list) -> str:
        a = step.migrate
        source = self.toolstack.vm(a.vm).host
        destination = self.other_member(source) if a.to == OTHER else a.to
        if destination == source:
            raise StepFailed(f"{a.vm} is already on {destination}")
        self.info(step.title, f"{a.vm}: {source} -> {destination}")
        if a.during is not None:
            return self.migrate_under_fault(step, source, destination, figures, details)
        result = self.toolstack.migrate(a.vm, destination)
        figures["duration"] = Figure(value=round(result.duration_s, 3), unit="s")
        details["migration"] = asdict(result)
        if not result.ok:
            raise StepFailed(f"migration of {a.vm} from {source} to {destination} failed: {result.error}")
        self.completed_migration(step, result, destination, figures, details)
        return f"{a.vm} {source} -> {destination} in {result.duration_s:.1f} s" + downtime_words(figures)

    def completed_migration(self, step: Step, result: MigrationResult, destination: str, figures: dict,
                            details: dict, marks: Sequence[tuple[float, str]] = ()) -> None:
        """Measure a migration that reported success, and check the guest is where it went."""
        event = f"migration of {result.vm} {result.source} -> {destination}"
        self.measure_migration(step, result, step.migrate.settle_s, figures, event, marks)
        self.migrations.append(result)
        details["migration"] = asdict(result)
        now = self.toolstack.vm(result.vm)
        if now.host != destination or now.state != "running":
            raise StepFailed(f"after migrating to {destination}, {result.vm} is {now.state} on {now.host}")

    def migrate_under_fault(self, step: Step, source: str, destination: str, figures: dict, details: dict) -> str:
        """Migrate while a fault strikes `after_s` into it (healed `heal_after_s` later, if asked).

        Whatever the migration does then is the finding: it completed (measured as any
        migration) or it failed (reported with where the guest is now; a host-loss fault
        leaves its guests to the failover that a later wait asks for)."""
        a = step.migrate
        during = a.during
        strike = StrikeDuring(self, during.fault, during.after_s, during.heal_after_s)
        strike.start()
        try:
            result = self.toolstack.migrate(a.vm, destination, on_start=strike.launched)
        finally:
            strike.stop()
        figures["duration"] = Figure(value=round(result.duration_s, 3), unit="s")
        details["migration"] = asdict(result)
        details["during"] = strike.details
        if strike.error is not None:
            raise StepFailed(f"{during.fault.label} could not be injected during the migration: {strike.error}")
        if strike.fault is None:
            raise StepFailed(f"the migration of {a.vm} ended after {result.duration_s:.1f} s, before "
                             f"{during.fault.label} was due at {during.after_s:g} s: lower `after_s`")
        fault_at = strike.fault.started_at - result.started_at
        figures["fault_at"] = Figure(value=round(fault_at, 3), unit="s", note=f"{during.fault.label}, after the "
                                     "migration started")
        struck = f"{during.fault.label} struck {fault_at:.1f} s in"
        healed = f", healed {during.heal_after_s:g} s later" if strike.healed else ""
        if not result.ok:
            figures["completed"] = Figure(value=0.0, unit="bool", note=result.error)
            unmeasured = "the migration did not complete"
            for name, unit in (("downtime", "s"), ("heartbeats_lost", "count"), ("heartbeat_slots_empty", "count")):
                figures[name] = Figure(value=None, unit=unit, note=unmeasured)
            where = "; ".join(f"{v.state} on {v.host}" for v in self.toolstack.vms() if v.name == a.vm) or "gone"
            return (f"{a.vm} {source} -> {destination} did not complete ({struck}{healed}): {result.error}; "
                    f"{a.vm} now: {where}")
        figures["completed"] = Figure(value=1.0, unit="bool")
        marks = [(strike.fault.started_at, f"{during.fault.label} struck")]
        if strike.fault.healed_at is not None:
            marks.append((strike.fault.healed_at, f"{during.fault.label} healed"))
        self.completed_migration(step, result, destination, figures, details, marks)
        return (f"{a.vm} {source} -> {destination} completed in {result.duration_s:.1f} s ({struck}{healed})"
                + downtime_words(figures))

    def other_member(self, host: str) -> str:
        pool = self.toolstack.pool()
        if pool is None:
            raise StepFailed(f"`to: {OTHER}` needs a pool, and there is none")
        others = [m for m in pool.members if m != host]
        if len(others) != 1:
            raise StepFailed(f"`to: {OTHER}` needs a pool of two members; pool {pool.name} has "
                             f"{', '.join(pool.members)}")
        return others[0]

    def do_evacuate(self, step: Step, figures: dict, details: dict, substeps: list) -> str:
        a = step.evacuate
        started = time.time()
        results = self.toolstack.evacuate(a.host)
        figures["duration"] = Figure(value=round(time.time() - started, 3), unit="s")
        figures["migrations"] = Figure(value=len(results), unit="count")
        failed = [r for r in results if not r.ok]
        measured = []
        for result in results:
            if result.ok:
                one: dict[str, Figure] = {}
                self.measure_migration(step, result, a.settle_s, one, f"evacuate {a.host}")
                measured.append(one)
                self.migrations.append(result)
        details["migrations"] = [asdict(r) for r in results]
        figures.update(combined(measured))
        if failed:
            raise StepFailed("; ".join(f"migration of {r.vm} to {r.destination} failed: {r.error}" for r in failed))
        left = [v.name for v in self.toolstack.vms_on(a.host)]
        if left:
            raise StepFailed(f"{', '.join(left)} still on {a.host} after evacuating it")
        moved = ", ".join(f"{r.vm} -> {r.destination}" for r in results) or "nothing to move"
        return f"{a.host} empty: {moved}" + downtime_words(figures)

    def measure_migration(self, step: Step, result: MigrationResult, settle_s: float, figures: dict[str, Figure],
                          event: str, marks: Sequence[tuple[float, str]] = ()) -> None:
        """Downtime and lost heartbeats around the migration call, and the guest's heartbeat
        timeline around it (`event` names it, `marks` adds moments); disk integrity if the step asks."""
        guest = self.guests.get(result.vm)
        window_end = result.started_at + result.duration_s
        if guest is not None and not guest.heartbeat:
            silent = f"{result.vm} sends no heartbeats"
            figures["downtime"] = Figure(value=None, unit="s", note=silent)
            figures["heartbeats_lost"] = Figure(value=None, unit="count", note=silent)
            figures["heartbeat_slots_empty"] = Figure(value=None, unit="count", note=silent)
        else:
            series, read_at = self.series_after(result.vm, lambda s: any(at > window_end for _, at in s), settle_s,
                                       f"heartbeats of {result.vm} to resume after its migration",
                                       since=result.started_at - HISTORY_S)
            stats = downtime_around(series, result.started_at, window_end)
            result.downtime_s, result.heartbeats_lost = stats.downtime_s, stats.heartbeats_lost
            figures["downtime"] = Figure(value=round_or_none(stats.downtime_s), unit="s", note=stats.reason)
            figures["heartbeats_lost"] = Figure(value=stats.heartbeats_lost, unit="count", note=stats.reason)
            figures["heartbeat_slots_empty"] = Figure(value=stats.heartbeats_missed, unit="count", note=stats.reason)
            moments = [(result.started_at, "migration start"), (window_end, "migration end"), *marks]
            self._timelines.append(heartbeat_timeline(
                result.vm, event, series, read_at, result.started_at, window_end, moments,
                (stats.gap_start, stats.gap_end), stats.restarted, stats.reason))
        if {"integrity", "records"} & set(step.expect):
            report = self.integrity(result.vm, figures)
            result.integrity_ok = report.ok if report is not None else None
