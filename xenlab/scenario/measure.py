"""Figures and heartbeat timelines from what the observer read: the runner's measuring words.

The runner decides when to read and what an event is; this module turns one read of a
guest's heartbeats into the step's figures and into its `HeartbeatTimeline` (the counts
per bucket around the event, the exact silence, the event's marks), and words for them.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..metrics import bucket_counts
from ..results import MAX_TIMELINE_BUCKETS, MAX_TIMELINE_MARKS, EventMark, Figure, HeartbeatTimeline
from ..toolstack.base import FailoverResult

HISTORY_S = 30.0  # heartbeats this long before a window are enough to measure around it
TIMELINE_BEFORE_S = 5.0  # a timeline starts this long before its event, to show the steady rate first
TIMELINE_AFTER_S = 5.0  # and ends this long after the event and the silence are over (or at the read)


def heartbeat_timeline(guest: str, event: str, series: Sequence[tuple[int, float]], read_at: float,
                       event_start: float, event_end: float, marks: Sequence[tuple[float, str]],
                       silence: tuple[float | None, float | None], restarted: bool = False,
                       note: str = "") -> HeartbeatTimeline:
    """`guest`'s heartbeats around one event, from one read of them made at `read_at`.

    The window runs from TIMELINE_BEFORE_S before the event to TIMELINE_AFTER_S after the
    event and the silence ended, but never past `read_at`: later buckets would be empty
    for want of a read, not of heartbeats; nor before the guest's first heartbeat (it did
    not exist yet, or was not sending). `silence` is (last heartbeat before, first
    after) as the figures measured it; marks outside the window are left out.
    """
    silence_start, silence_end = silence
    ends = [t for t in (event_end, silence_end) if t is not None]
    heard = [at for _, at in series]
    start = max(event_start - TIMELINE_BEFORE_S, min(heard, default=event_start - TIMELINE_BEFORE_S))
    end = min(read_at, max(ends) + TIMELINE_AFTER_S)
    buckets = bucket_counts(series, start, max(end, start), MAX_TIMELINE_BUCKETS)
    shown = [EventMark(at=at, label=label) for at, label in sorted(marks) if start <= at <= end]
    return HeartbeatTimeline(guest=guest, event=event, start=buckets.start, bucket_s=round(buckets.bucket_s, 6),
                             counts=buckets.counts, silence_start=silence_start, silence_end=silence_end,
                             restarted=restarted, note=note, marks=shown[:MAX_TIMELINE_MARKS])


def round_or_none(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def combined(measured: list[dict[str, Figure]]) -> dict[str, Figure]:
    """Figures of an evacuation from those of its migrations: worst downtime, total lost, all intact."""
    if not measured:
        return {"downtime": Figure(value=None, unit="s", note="no guest was moved")}
    combined: dict[str, Figure] = {}
    downtimes = [m["downtime"] for m in measured if "downtime" in m]
    if downtimes:
        missing = [f.note for f in downtimes if f.value is None]
        combined["downtime"] = (Figure(value=None, unit="s", note="; ".join(missing)) if missing else
                                max(downtimes, key=lambda f: f.value))
        for count in ("heartbeats_lost", "heartbeat_slots_empty"):
            values = [m[count].value for m in measured if count in m]
            combined[count] = Figure(value=None if None in values else sum(values), unit="count")
    for one in measured:
        merge_integrity(combined, one)
    return combined


def merge_integrity(into: dict[str, Figure], one: dict[str, Figure]) -> None:
    """integrity: all ok (the first problem's note); records: the sum."""
    if "integrity" not in one:
        return
    new, old = one["integrity"], into.get("integrity")
    if old is None or (old.value is not None and (new.value is None or new.value < old.value)):
        into["integrity"] = new
    counted = [f for f in (into.get("records"), one.get("records")) if f is not None]
    records = [f.value for f in counted]
    into["records"] = Figure(value=None if None in records else sum(records), unit="count",
                             measurable=all(f.measurable for f in counted))


def failover_figures(result: FailoverResult, figures: dict[str, Figure]) -> None:
    note = f"reported by recover({result.failed_host})"
    if result.records:  # a cluster stack's: each figure is a moment of its own log
        note = f"the cluster's membership change without {result.failed_host} (its journal)"
    figures["detection"] = Figure(value=round_or_none(result.detected_after_s), unit="s", note=note)
    if result.records:
        figures["fencing"] = Figure(value=round_or_none(result.fenced_after_s), unit="s",
                                    note=result.fencing or "no fencing recorded")
        for vm, after in result.started_after_s.items():
            figures["restart"] = Figure(value=round_or_none(after), unit="s",
                                        note=f"{vm}'s resource started on {result.restarted.get(vm, '?')} "
                                             "(the survivor's journal)")


def figures_line(figures: dict[str, Figure]) -> str:
    parts = []
    for name, figure in figures.items():
        if figure.value is not None and name != "duration":
            parts.append(f"{name} {figure.value:g}{'' if figure.unit in ('count', 'bool') else ' ' + figure.unit}")
    return ", ".join(parts)


def downtime_words(figures: dict[str, Figure]) -> str:
    downtime = figures.get("downtime")
    if downtime is None:
        return ""
    if downtime.value is None:
        return f", downtime unknown ({downtime.note})"
    lost = figures.get("heartbeats_lost")
    extra = f", {lost.value:g} heartbeats lost" if lost is not None and lost.value is not None else ""
    return f", downtime {downtime.value:.2f} s{extra}"


def recovery_words(figures: dict[str, Figure]) -> str:
    recovery = figures.get("recovery")
    if recovery is None:
        return ""
    if recovery.value is None:
        return f"; recovery unknown ({recovery.note})"
    if "sends no heartbeats" in recovery.note:
        return f"; recovered {recovery.value:.1f} s after the fault ({recovery.note})"
    return f"; heartbeats back {recovery.value:.1f} s after the fault"
