"""Plots as inline PNG data URIs (matplotlib, Agg canvas): reports open with no network.

pyplot is not used: it keeps global state and may pick an interactive backend; a bare
Figure on an Agg canvas renders the same picture and leaves the caller's matplotlib alone.
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass

OUTCOME_COLORS = {"passed": "#2e7d32", "failed": "#c62828", "error": "#ef6c00", "skipped": "#9e9e9e"}
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
