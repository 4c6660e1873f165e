"""Simulated guests' heartbeats: what a 10 ms UDP sender inside each VM would deliver.

There are no real guests behind the simulator, so that the same metrics code
(`xenlab.metrics`) can measure downtime and recovery on it, every running,
non-control-domain VM is modelled as a sender on the simulator's clock:

- it starts sending `boot_s` after it is booted (VM.start, HA restart), with its
  sequence number starting at 0 (a restart is a new *run*);
- it sends every `INTERVAL_S` while it executes; a paused guest (the switch-over
  of `VM.pool_migrate`, `VM.pause`) sends nothing and its counter does not move;
  the switch-over pause lasts `switchover_s` from the moment xapi records the VM
  on its destination;
- while its host is cut off (isolated) it keeps sending but nothing arrives;
- it stops for good when its host dies or xapi halts it.

The series is computed from these transitions when asked, never stored beat by
beat, so a virtual clock may jump an hour without a single timer firing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

INTERVAL_S = 0.01
DEFAULT_BOOT_S = 0.5  # from VM start to the guest's first heartbeat
DEFAULT_SWITCHOVER_S = 0.2  # guest paused during the last copy of a live migration


@dataclass
class Run:
    """One boot of a guest: from its first heartbeat to its death (None: still running)."""

    first_at: float
    ended_at: float | None = None
    pauses: list[list[float | None]] = field(default_factory=list)  # [start, end|None]: not sending
    outages: list[list[float | None]] = field(default_factory=list)  # [start, end|None]: sent, not received

    def end(self, at: float) -> None:
        if self.ended_at is None:
            self.ended_at = max(at, self.first_at)

    def active(self, until: float) -> list[tuple[float, float]]:
        """Stretches in which the guest executes, up to `until` (pauses cut out)."""
        end = until if self.ended_at is None else min(until, self.ended_at)
        stretches, start = [], self.first_at
        for a, b in sorted((p[0], p[1]) for p in self.pauses):
            if a >= end:
                break
            if a > start:
                stretches.append((start, a))
            start = max(start, end if b is None else b)
        if start < end:
            stretches.append((start, end))
        return stretches

    def lost(self, at: float) -> bool:
        return any(a <= at and (b is None or at < b) for a, b in self.outages)


class GuestHeartbeats:
    """Every simulated guest's runs, keyed by VM ref; fed by the deployment's transitions."""

    def __init__(self, boot_s: float = DEFAULT_BOOT_S, switchover_s: float = DEFAULT_SWITCHOVER_S):
        if boot_s < 0 or switchover_s < 0:
            raise ValueError("guest model durations cannot be negative")
        self.boot_s = boot_s
        self.switchover_s = switchover_s
        self.runs: dict[str, list[Run]] = {}

    def _current(self, vm: str) -> Run | None:
        runs = self.runs.get(vm)
        return runs[-1] if runs and runs[-1].ended_at is None else None

    # transitions (called with the deployment lock held) -------------------------------
    def booted(self, vm: str, at: float, paused: bool = False) -> None:
        self.stopped(vm, at)
        run = Run(first_at=at + self.boot_s)
        if paused:
            run.pauses.append([run.first_at, None])
        self.runs.setdefault(vm, []).append(run)

    def stopped(self, vm: str, at: float) -> None:
        run = self._current(vm)
        if run is not None:
            run.end(at)

    def paused(self, vm: str, at: float, seconds: float | None = None) -> None:
        """Stop sending from `at`, for `seconds` (None: until `resumed`)."""
        run = self._current(vm)
        if run is not None:
            run.pauses.append([at, None if seconds is None else at + seconds])

    def resumed(self, vm: str, at: float) -> None:
        run = self._current(vm)
        if run is not None:
            for pause in run.pauses:
                if pause[1] is None:
                    pause[1] = at

    def migrated(self, vm: str, at: float) -> None:
        self.paused(vm, at, self.switchover_s)

    def cut_off(self, vm: str, at: float) -> None:
        run = self._current(vm)
        if run is not None and not any(o[1] is None for o in run.outages):
            run.outages.append([at, None])

    def reconnected(self, vm: str, at: float) -> None:
        run = self._current(vm)
        if run is not None:
            for outage in run.outages:
                if outage[1] is None:
                    outage[1] = at

    # reading -------------------------------------------------------------------------
    def series(self, vm: str, now: float, since: float | None = None) -> list[tuple[int, float]]:
        """(seq, arrival time) of every heartbeat of `vm` received up to `now` (from `since`)."""
        out: list[tuple[int, float]] = []
        for run in self.runs.get(vm, []):
            if run.ended_at is not None and since is not None and run.ended_at < since:
                continue
            seq = 0
            for start, end in run.active(now + INTERVAL_S / 2):  # a beat due right now has been sent
                count = max(0, math.ceil((end - start) / INTERVAL_S - 1e-9))
                first = 0
                if since is not None and since > start:
                    first = min(count, math.ceil((since - start) / INTERVAL_S - 1e-9))
                for k in range(first, count):
                    at = start + k * INTERVAL_S
                    if at <= now and not run.lost(at):
                        out.append((seq + k, round(at, 6)))
                seq += count
        return out
