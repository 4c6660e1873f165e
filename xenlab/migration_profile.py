"""Where a live migration's time goes: `xl -vvv migrate`'s own lines, timed as they arrive.

`xl migrate` prints both sides' progress on the sender's stderr (the receiver's
`migrate-receive` talks back through the SSH stream), so each line stamped with the time
it reached the controller gives the phases of one migration: reaching the target, the
live memory rounds, the blackout (the guest suspended, the stream's end, the domain built
and its devices attached on the target, hotplug scripts included), the handshake that
hands the guest over, and its start. Pure: lines in, phases out (bench/migration_profile.py
collects the lines and the hosts' counters).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

# Marks in xl's own words (tools/xl/xl_migrate.c, libxl), in the order they come.
MARKS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("target_ready", re.compile(r"migration target: Ready to receive domain")),
    ("stream_start", re.compile(r"Saving to migration stream|libxl-save-helper.*save|Saving domain", re.IGNORECASE)),
    ("suspended", re.compile(r"suspend(ed|ing)? (the )?domain|Domain has suspended|guest has suspended|"
                             r"issuing PV suspend request|domain_suspend_callback", re.IGNORECASE)),
    ("transfer_complete", re.compile(r"migration target: Transfer complete")),
    ("acknowledged", re.compile(r"migration sender: Target has acknowledged transfer")),
    ("permission", re.compile(r"migration target: Got permission, starting domain")),
    ("started", re.compile(r"migration target: Domain started successs?fully")),
    ("success", re.compile(r"Migration successful|migration sender: Target reports successful startup")),
)
HOTPLUG = re.compile(r"hotplug|/etc/xen/scripts/|vif-bridge|block\b.*(add|online)", re.IGNORECASE)
PHASES: tuple[tuple[str, str, str], ...] = (
    ("reach target", "start", "target_ready"),  # SSH to the target, xl migrate-receive starting there
    ("live memory rounds", "target_ready", "suspended"),
    ("blackout: stream end, domain built, devices attached", "suspended", "transfer_complete"),
    ("hand-over handshake", "transfer_complete", "permission"),
    ("unpause on target", "permission", "started"),
    ("report back", "started", "end"),
)


@dataclass(frozen=True)
class TimedLine:
    at: float  # seconds from the start of the migrate command
    text: str


@dataclass
class MigrationProfile:
    """One migration's phases (seconds), when each mark came, and the hotplug lines in the blackout."""

    total_s: float
    marks: dict[str, float] = field(default_factory=dict)
    phases: dict[str, float | None] = field(default_factory=dict)
    hotplug_lines: int = 0  # lines about hotplug scripts between suspend and transfer complete
    missing: list[str] = field(default_factory=list)  # marks xl never printed (this Xen words them otherwise)


def profile(lines: list[TimedLine], total_s: float) -> MigrationProfile:
    """The phases of one `xl -vvv migrate` from its timed lines (the first match of each mark)."""
    marks: dict[str, float] = {"start": 0.0, "end": total_s}
    for line in lines:
        for name, pattern in MARKS:
            if name not in marks and pattern.search(line.text):
                marks[name] = line.at
    phases: dict[str, float | None] = {}
    for label, begin, end in PHASES:
        if begin in marks and end in marks and marks[end] >= marks[begin]:
            phases[label] = round(marks[end] - marks[begin], 3)
        else:
            phases[label] = None
    blackout_from, blackout_to = marks.get("suspended"), marks.get("transfer_complete")
    hotplug = 0
    if blackout_from is not None and blackout_to is not None:
        hotplug = sum(1 for line in lines if blackout_from <= line.at <= blackout_to and HOTPLUG.search(line.text))
    missing = [name for name, _ in MARKS if name not in marks]
    return MigrationProfile(total_s=round(total_s, 3), marks={k: round(v, 3) for k, v in marks.items()},
                            phases=phases, hotplug_lines=hotplug, missing=missing)


@dataclass(frozen=True)
class CpuCounters:
    """A host's /proc/stat: CPU jiffies busy and idle, and forks since boot."""

    busy: int
    idle: int
    forks: int


def parse_proc_stat(text: str) -> CpuCounters:
    """The aggregate `cpu` line (user nice system idle iowait irq softirq steal) and `processes`."""
    busy = idle = forks = None
    for line in text.splitlines():
        parts = line.split()
        if parts and parts[0] == "cpu" and len(parts) >= 5:
            values = [int(v) for v in parts[1:9]]
            idle = values[3] + (values[4] if len(values) > 4 else 0)
            busy = sum(values) - idle
        elif parts and parts[0] == "processes" and len(parts) == 2:
            forks = int(parts[1])
    if busy is None or idle is None or forks is None:
        raise ValueError("not a /proc/stat: no aggregate cpu line or no processes line")
    return CpuCounters(busy, idle, forks)


def busy_share(before: CpuCounters, after: CpuCounters) -> float | None:
    """How busy the host's CPUs were between two readings (0..1), None if no time passed."""
    total = (after.busy - before.busy) + (after.idle - before.idle)
    return None if total <= 0 else (after.busy - before.busy) / total
