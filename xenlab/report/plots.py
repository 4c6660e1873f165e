"""Plots as inline PNG data URIs (matplotlib, Agg canvas): reports open with no network.

pyplot is not used: it keeps global state and may pick an interactive backend; a bare
Figure on an Agg canvas renders the same picture and leaves the caller's matplotlib alone.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from dataclasses import dataclass

from ..results import HeartbeatTimeline

OUTCOME_COLORS = {"passed": "#2e7d32", "failed": "#c62828", "error": "#ef6c00", "skipped": "#9e9e9e",
                  "not_measured": "#6a1b9a"}
PHASE_COLORS = ["#1565c0", "#6a1b9a", "#00838f", "#f9a825", "#5d4037"]


@dataclass(frozen=True)
class FailoverPhases:
    """One failover as its phases: seconds from the fault to each milestone."""

    label: str
    milestones: dict[str, float]  # e.g. {"detected": 31.0, "fenced": 33.5, "guest back": 52.0}


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _data_uri(fig) -> str:
    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def bringup_plot(bringup: dict[str, dict[str, float]]) -> str | None:
    """Horizontal bars per host, one segment per readiness stage (times are cumulative)."""
    if not bringup:
        return None
    hosts = list(bringup)
    stages: list[str] = []
    for host_stages in bringup.values():
        for stage in sorted(host_stages, key=host_stages.get):
            if stage not in stages:
                stages.append(stage)
    fig = _figure(8.5, 1.2 + 0.45 * len(hosts))
    ax = fig.add_subplot()
    for i, stage in enumerate(stages):
        starts, widths = [], []
        for host in hosts:
            done = sorted(bringup[host].items(), key=lambda kv: kv[1])
            names = [n for n, _ in done]
            if stage not in names:
                starts.append(0.0)
                widths.append(0.0)
                continue
            index = names.index(stage)
            start = done[index - 1][1] if index else 0.0
            starts.append(start)
            widths.append(done[index][1] - start)
        ax.barh(hosts, widths, left=starts, color=PHASE_COLORS[i % len(PHASE_COLORS)], label=stage)
    ax.invert_yaxis()
    ax.set_xlabel("seconds since QEMU start")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small")
    ax.set_title("bring-up stages per host")
    return _data_uri(fig)


def distribution_plot(values: list[float], unit: str, title: str) -> str | None:
    """Histogram with the median marked: how spread a repeated measurement is."""
    values = [v for v in values if v is not None]
    if not values:
        return None
    import statistics

    fig = _figure(7.5, 3.0)
    ax = fig.add_subplot()
    ax.hist(values, bins=min(30, max(5, len(values) // 2)), color=PHASE_COLORS[0])
    median = statistics.median(values)
    ax.axvline(median, color=OUTCOME_COLORS["failed"], linestyle="--", label=f"median {median:.3g} {unit}")
    ax.set_xlabel(unit or "value")
    ax.set_ylabel("count")
    ax.set_title(f"{title} ({len(values)} samples)")
    ax.legend(fontsize="small")
    return _data_uri(fig)


def failover_plot(failovers: list[FailoverPhases]) -> str | None:
    """One bar per failover, split at each milestone (detected, fenced, guest back...)."""
    if not failovers:
        return None
    fig = _figure(8.5, 1.4 + 0.45 * len(failovers))
    ax = fig.add_subplot()
    seen: dict[str, str] = {}
    labels = [f.label for f in failovers]
    for row, failover in enumerate(failovers):
        previous = 0.0
        for name, at in sorted(failover.milestones.items(), key=lambda kv: kv[1]):
            color = seen.setdefault(name, PHASE_COLORS[len(seen) % len(PHASE_COLORS)])
            ax.barh(row, at - previous, left=previous, color=color,
                    label=name if name not in ax.get_legend_handles_labels()[1] else None)
            previous = at
    ax.set_yticks(range(len(labels)), labels)
    ax.invert_yaxis()
    ax.set_xlabel("seconds since the fault")
    ax.set_title("failover phases")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small")
    return _data_uri(fig)


def trend_plot(points: list[tuple[float, float | None]], baseline: list[float | None], flagged: list[bool],
               title: str, unit: str) -> str:
    """A metric over runs: values, the rolling baseline, and regressions in red."""
    import datetime

    fig = _figure(7.5, 2.6)
    ax = fig.add_subplot()
    xs = [datetime.datetime.fromtimestamp(t) for t, _ in points]
    ys = [v for _, v in points]
    ax.plot(xs, ys, marker="o", color=PHASE_COLORS[0], label="value")
    base_x = [x for x, b in zip(xs, baseline) if b is not None]
    base_y = [b for b in baseline if b is not None]
    if base_y:
        ax.plot(base_x, base_y, linestyle="--", color="#757575", label="baseline (rolling median)")
    bad = [(x, y) for x, y, f in zip(xs, ys, flagged) if f]
    if bad:
        ax.scatter([x for x, _ in bad], [y for _, y in bad], color=OUTCOME_COLORS["failed"], zorder=3, s=60,
                   label="regression")
    ax.set_ylabel(unit or "value")
    ax.set_title(title, fontsize="medium")
    ax.legend(fontsize="x-small")
    fig.autofmt_xdate()
    return _data_uri(fig)


# -- a guest's heartbeats around a switch-over or a failure --------------------------------
SILENCE_COLOR = "#c62828"
MARK_COLOR = "#37474f"


@dataclass(frozen=True)
class HeartbeatRow:
    """One guest's heartbeats around one event, as plain data (any clock, in seconds).

    `counts[i]` heartbeats arrived in [start + i*bucket_s, start + (i+1)*bucket_s).
    `silence` is the exact (last heartbeat before, first heartbeat after; None: not yet).
    `marks` are the event's moments: (time, label).
    """

    guest: str
    start: float
    bucket_s: float
    counts: Sequence[int]
    silence: tuple[float, float | None] | None = None
    marks: Sequence[tuple[float, str]] = ()
    note: str = ""  # why there is no silence measured, when there is none

    @property
    def end(self) -> float:
        return self.start + len(self.counts) * self.bucket_s


def silence_label(row: HeartbeatRow) -> str:
    """'silence 2.31 s', or what is known of a silence that had not ended when it was read."""
    if row.silence is None:
        return f"no silence measured ({row.note})" if row.note else "no silence"
    start, end = row.silence
    if end is None:
        return f"silence of {row.end - start:.2f} s or more (no heartbeat since)"
    return f"silence {end - start:.2f} s"


def heartbeat_rates(row: HeartbeatRow, zero: float) -> tuple[list[float], list[float]]:
    """The plotted data: bucket edges in seconds since `zero`, and heartbeats per second in each bucket."""
    edges = [row.start - zero + i * row.bucket_s for i in range(len(row.counts) + 1)]
    return edges, [c / row.bucket_s for c in row.counts]


def heartbeat_plot(event: str, rows: Sequence[HeartbeatRow], zero: float | None = None,
                   interval_s: float = 0.01) -> str | None:
    """Heartbeats per second over time around one event, one row per guest.

    The silence is shaded and labelled with its measured length; the event's marks are
    vertical lines with their labels; a dashed line is the rate a steady guest sends
    (one heartbeat every `interval_s`). Times are seconds since `zero` (by default the
    earliest mark, e.g. the migration's start).
    """
    rows = [r for r in rows if r.counts]
    if not rows:
        return None
    if zero is None:
        zero = min((at for r in rows for at, _ in r.marks), default=min(r.start for r in rows))
    expected = 1.0 / interval_s
    fig = _figure(8.5, 0.6 + 2.0 * len(rows))
    axes = fig.subplots(len(rows), 1, sharex=True, squeeze=False)[:, 0]
    for ax, row in zip(axes, rows):
        edges, rates = heartbeat_rates(row, zero)
        top = max(max(rates, default=0.0), expected) * 1.35
        ax.stairs(rates, edges, fill=True, color=PHASE_COLORS[0], alpha=0.8, label="heartbeats\nreceived")
        ax.axhline(expected, color="#757575", linestyle="--", linewidth=0.8,
                   label=f"steady: {expected:g}/s\n(one every {interval_s * 1000:g} ms)")
        left, right_edge = edges[0], edges[-1]
        if row.silence is not None:
            start, end = row.silence
            right = (end if end is not None else row.end) - zero
            left, right_edge = min(left, start - zero), max(right_edge, right)
            ax.axvspan(start - zero, right, color=SILENCE_COLOR, alpha=0.18, linewidth=0)
            ax.text((start - zero + right) / 2, top * 0.6, silence_label(row), color=SILENCE_COLOR,
                    ha="center", va="center", fontsize="small", fontweight="bold",
                    bbox={"facecolor": "white", "alpha": 0.85, "edgecolor": SILENCE_COLOR, "boxstyle": "round"})
        for at, label in _merged_marks(row.marks, (right_edge - left) * 0.01):
            ax.axvline(at - zero, color=MARK_COLOR, linestyle=":", linewidth=1.2)
            ax.text(at - zero, top * 0.98, f" {label}", rotation=90, clip_on=True, va="top", ha="left", fontsize="x-small",
                    color=MARK_COLOR)
        ax.set_ylim(0, top)
        pad = (right_edge - left) * 0.02
        ax.set_xlim(left - pad, right_edge + pad)
        ax.set_ylabel(f"{row.guest}\nheartbeats/s", fontsize="small")
    axes[0].set_title(event, fontsize="medium")
    axes[0].legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="x-small")
    axes[-1].set_xlabel("seconds since " + _first_mark_label(rows, zero))
    return _data_uri(fig)


def _merged_marks(marks: Sequence[tuple[float, str]], within: float) -> list[tuple[float, str]]:
    """Marks closer than `within` share one line and one label ("h1 detected, h1 fenced")."""
    merged: list[tuple[float, str]] = []
    for at, label in sorted(marks):
        if merged and at - merged[-1][0] <= within:
            merged[-1] = (merged[-1][0], f"{merged[-1][1]}, {label}")
        else:
            merged.append((at, label))
    return merged


def _first_mark_label(rows: Sequence[HeartbeatRow], zero: float) -> str:
    at_zero = [label for r in rows for at, label in r.marks if abs(at - zero) < 1e-9]
    return at_zero[0] if at_zero else "the window's start"


def timeline_rows(timelines: Sequence[HeartbeatTimeline]) -> dict[str, list[HeartbeatRow]]:
    """A step's recorded timelines as plot rows, grouped by event (one plot per event)."""
    events: dict[str, list[HeartbeatRow]] = {}
    for t in timelines:
        silence = (t.silence_start, t.silence_end) if t.silence_start is not None else None
        events.setdefault(t.event, []).append(HeartbeatRow(
            guest=t.guest, start=t.start, bucket_s=t.bucket_s, counts=list(t.counts), silence=silence,
            marks=[(m.at, m.label) for m in t.marks], note=t.note))
    return events


def bar_plot(bars: list[tuple[str, float, bool | None]], unit: str, title: str,
             threshold: float | None = None) -> str | None:
    """Horizontal bars (label, value, passed) coloured by verdict, a threshold line if one
    applies to all of them: how each measured path compares with the others and the bound."""
    bars = [b for b in bars if b[1] is not None]
    if not bars:
        return None
    fig = _figure(8.5, 1.2 + 0.4 * len(bars))
    ax = fig.add_subplot()
    colors = [OUTCOME_COLORS["passed"] if ok else OUTCOME_COLORS["failed"] if ok is False else PHASE_COLORS[0]
              for _, _, ok in bars]
    ax.barh([label for label, _, _ in bars], [value for _, value, _ in bars], color=colors)
    if threshold is not None:
        ax.axvline(threshold, color="#212121", linestyle="--", label=f"threshold {threshold:g} {unit}")
        ax.legend(fontsize="small")
    ax.invert_yaxis()
    ax.set_xlabel(unit)
    ax.set_title(title)
    return _data_uri(fig)
