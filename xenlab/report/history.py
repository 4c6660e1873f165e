"""Nightly history: runs in SQLite, each metric's trend, regressions against a rolling baseline.

A metric is one summary figure of one scenario on one lab (results of different labs are
not comparable), plus bring-up stage times. A value is a regression when it is worse than
the median of the previous `window` values by more than `threshold` percent; at least
`MIN_BASELINE` earlier values are needed before anything is judged.

Which way is worse (the direction rule, first match wins):
Names are split into words at anything but letters and digits; a word "mentions" a
vocabulary entry when it starts with it (errors -> error).
1. lower is better when the figure's name mentions a cost: downtime, latency, duration,
   time, lost, loss, drop, error, fail, retry, gap, bringup, seconds;
2. higher is better when the unit is a rate (ends in "/s") or "bool" (1 = the property held),
   or the name mentions throughput, bandwidth, iops, rate, speed, success, ok, availability, score;
3. otherwise lower is better: most figures are times, counts of bad events or sizes.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import sqlite3
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Self

from ..errors import SpecError
from ..results import RunResults

Direction = Literal["lower", "higher"]
MIN_BASELINE = 3
LOWER_WORDS = ("downtime", "latency", "duration", "time", "lost", "loss", "drop", "error", "fail", "retry", "gap",
               "bringup", "seconds")
HIGHER_WORDS = ("throughput", "bandwidth", "iops", "rate", "speed", "success", "ok", "availability", "score")
BRINGUP = "(bring-up)"

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY, created_at REAL NOT NULL, added_at REAL NOT NULL, lab TEXT NOT NULL,
    accel TEXT NOT NULL, xenlab_version TEXT NOT NULL, source TEXT NOT NULL, digest TEXT NOT NULL UNIQUE,
    results TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS figures (
    run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE, lab TEXT NOT NULL, scenario TEXT NOT NULL,
    figure TEXT NOT NULL, unit TEXT NOT NULL, value REAL NOT NULL);
CREATE INDEX IF NOT EXISTS figures_by_metric ON figures(lab, scenario, figure, unit);
"""


def default_db() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "xenlab" / "history.sqlite"


def direction_of(figure: str, unit: str) -> Direction:
    """See the module docstring for the rule."""
    words = [w for w in re.split(r"[^a-z0-9]+", figure.lower()) if w]

    def mentions(vocabulary: tuple[str, ...]) -> bool:
        return any(w.startswith(v) for w in words for v in vocabulary)

    if mentions(LOWER_WORDS):
        return "lower"
    if unit.endswith("/s") or unit == "bool" or mentions(HIGHER_WORDS):
        return "higher"
    return "lower"


@dataclass(frozen=True, order=True)
class MetricKey:
    lab: str
    scenario: str
    figure: str
    unit: str

    def __str__(self) -> str:
        return f"{self.lab} · {self.scenario} · {self.figure}" + (f" [{self.unit}]" if self.unit else "")


@dataclass(frozen=True)
class Point:
    run_id: int
    created_at: float
    value: float
    baseline: float | None  # median of the previous `window` values, None while history is too short
    change_pct: float | None  # signed change against the baseline
    regression: bool


@dataclass
class Trend:
    key: MetricKey
    direction: Direction
    points: list[Point] = field(default_factory=list)

    @property
    def latest(self) -> Point:
        return self.points[-1]

    @property
    def regressed(self) -> bool:
        """Did the newest run regress? (Older flagged points are history, shown but not failing.)"""
        return bool(self.points) and self.latest.regression


def lab_figures_of(results: RunResults) -> list[tuple[str, str, str, str, float]]:
    """(lab, scenario, figure, unit, value) as stored: a scenario's figures under its own lab, so
    a merged run of several labs (`xenlab report merge`) keeps each lab's metrics apart; its
    hosts' bring-up stages come as LAB/HOST and go under that lab too."""
    labs = {s.name: s.lab for s in results.scenarios}
    merged = any("/" in host for host in results.bringup)
    rows = []
    for scenario, figure, unit, value in figures_of(results):
        lab = labs.get(scenario) or results.lab
        if scenario == BRINGUP and merged:
            if "/" not in figure.split(".")[0]:
                continue  # the whole run's "ready" mixes labs: each lab's own follows
            lab, _, figure = figure.partition("/")
        rows.append((lab, scenario, figure, unit, value))
    if merged:
        ready: dict[str, float] = {}
        for host, stages in results.bringup.items():
            lab = host.partition("/")[0] if "/" in host else results.lab
            ready[lab] = max(ready.get(lab, 0.0), max(stages.values(), default=0.0))
        rows += [(lab, BRINGUP, "ready", "s", value) for lab, value in ready.items() if math.isfinite(value)]
    return rows


def figures_of(results: RunResults) -> list[tuple[str, str, str, float]]:
    """(scenario, figure, unit, value) for every measured (finite) summary figure and bring-up stage."""
    rows = [(s.name, name, f.unit, float(f.value)) for s in results.scenarios for name, f in s.summary.items()
            if f.value is not None]
    for host, stages in results.bringup.items():
        rows += [(BRINGUP, f"{host}.{stage}", "s", float(seconds)) for stage, seconds in stages.items()]
    if results.bringup:
        ready = max(max(stages.values(), default=0.0) for stages in results.bringup.values())
        rows.append((BRINGUP, "ready", "s", float(ready)))
    return [row for row in rows if math.isfinite(row[3])]  # NaN or infinity is not a measurement


def judge(values: list[float], direction: Direction, window: int, threshold_pct: float
          ) -> list[tuple[float | None, float | None, bool]]:
    """(baseline, change %, regression) for each value against the median of the `window` before it."""
    judged = []
    for i, value in enumerate(values):
        previous = values[max(0, i - window):i]
        if len(previous) < min(MIN_BASELINE, window):
            judged.append((None, None, False))
            continue
        baseline = statistics.median(previous)
        if baseline == 0:
            change = 0.0 if value == 0 else (float("inf") if value > 0 else float("-inf"))
        else:
            change = (value - baseline) / abs(baseline) * 100
        worse = change if direction == "lower" else -change
        judged.append((baseline, change, worse > threshold_pct))
    return judged


@dataclass
class Durations:
    """Earlier runs' times: (lab, scenario or test name) -> seconds, and lab -> bring-up seconds."""

    seconds: dict[tuple[str, str], float] = field(default_factory=dict)
    bringup: dict[str, float] = field(default_factory=dict)

    def span_of(self, lab: str) -> float | None:
        """A whole lab's run (its scenarios and bring-up), e.g. a matrix combination's qualification."""
        mine = [v for (name, _), v in self.seconds.items() if name == lab]
        if not mine and lab not in self.bringup:
            return None
        return sum(mine) + self.bringup.get(lab, 0.0)


SQLITE_HEADER = b"SQLite format 3\x00"
COLUMNS = {"runs": {"id", "created_at", "added_at", "lab", "accel", "xenlab_version", "source", "digest", "results"},
           "figures": {"run_id", "lab", "scenario", "figure", "unit", "value"}}


class History:
    """The nightly store. One file; safe to share between CI jobs that add runs one at a time.

    A path that is not a xenlab history (another file, another program's SQLite database, a
    directory) is refused before anything is written to it; reading a history that does not
    exist yet creates nothing.
    """

    def __init__(self, path: Path | str | None = None):
        self.path = Path(path) if path else default_db()
        self._db: sqlite3.Connection | None = None
        if self.path.exists() or self.path.is_symlink():
            self._connect(create=False)

    @property
    def db(self) -> sqlite3.Connection:
        """The connection, creating the database (and its directory) on first use."""
        if self._db is None:
            self._connect(create=True)
        assert self._db is not None
        return self._db

    def _refuse(self, message: str) -> SpecError:
        return SpecError(str(self.path), [(None, message + ": give another --db (a new file is created)")])

    def _connect(self, create: bool) -> None:
        if self.path.is_dir():
            raise self._refuse("is a directory, not a history database")
        if self.path.exists():
            try:
                with open(self.path, "rb") as f:
                    header = f.read(len(SQLITE_HEADER))
            except OSError as exc:
                raise self._refuse(f"cannot be read ({exc.strerror or exc})") from None
            if header and header != SQLITE_HEADER:
                raise self._refuse("is not an SQLite database (a xenlab history is one)")
        elif create:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            db = sqlite3.connect(self.path)
            tables = {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            for table, wanted in COLUMNS.items():
                if table in tables:
                    columns = {row[1] for row in db.execute(f"PRAGMA table_info({table})")}
                    if not wanted <= columns:
                        db.close()
                        raise self._refuse(f"is an SQLite database whose {table!r} table is not a xenlab history's")
            if tables and not tables & set(COLUMNS):
                db.close()
                raise self._refuse(f"is an SQLite database of something else (tables: {', '.join(sorted(tables))})")
            db.execute("PRAGMA foreign_keys = ON")
            db.executescript(SCHEMA)
        except sqlite3.DatabaseError as exc:
            raise self._refuse(f"cannot be used as a history database ({exc})") from None
        self._db = db

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def add(self, results: RunResults, source: str = "") -> tuple[int, bool]:
        """Store a run; (run id, False) when this very run was stored before."""
        text = results.model_dump_json(by_alias=True)
        digest = hashlib.sha256(text.encode()).hexdigest()
        known = self.db.execute("SELECT id FROM runs WHERE digest = ?", (digest,)).fetchone()
        if known:
            return known[0], False
        with self.db:
            cursor = self.db.execute(
                "INSERT INTO runs (created_at, added_at, lab, accel, xenlab_version, source, digest, results) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (results.created_at, time.time(), results.lab, results.accel, results.xenlab_version, source, digest,
                 text))
            run_id = cursor.lastrowid
            self.db.executemany(
                "INSERT INTO figures (run_id, lab, scenario, figure, unit, value) VALUES (?, ?, ?, ?, ?, ?)",
                [(run_id, *row) for row in lab_figures_of(results)])
        return run_id, True

    def run_count(self) -> int:
        if self._db is None:
            return 0  # no history yet
        return self._db.execute("SELECT COUNT(*) FROM runs").fetchone()[0]

    def durations(self, runs: int = 20) -> Durations:
        """How long each scenario (or test) and each lab's bring-up took in the newest `runs`
        runs: the median, for planning shards (`xenlab.shards`)."""
        found = Durations()
        if self._db is None:
            return found  # no history yet
        rows = self._db.execute("SELECT results FROM runs ORDER BY created_at DESC, id DESC LIMIT ?", (runs,))
        seconds: dict[tuple[str, str], list[float]] = {}
        bringups: dict[str, list[float]] = {}
        for (text,) in rows:
            try:
                results = RunResults.model_validate_json(text)
            except ValueError:
                continue  # written by another version of xenlab: not a duration this one can read
            for scenario in results.scenarios:
                key = (scenario.lab or results.lab, scenario.name)
                seconds.setdefault(key, []).append(max(0.0, scenario.ended_at - scenario.started_at))
            ready: dict[str, float] = {}
            for host, stages in results.bringup.items():
                lab = host.partition("/")[0] if "/" in host else results.lab
                ready[lab] = max(ready.get(lab, 0.0), max(stages.values(), default=0.0))
            for lab, value in ready.items():
                bringups.setdefault(lab, []).append(value)
        found.seconds = {k: statistics.median(v) for k, v in seconds.items()}
        found.bringup = {k: statistics.median(v) for k, v in bringups.items()}
        return found

    def trends(self, window: int = 7, threshold_pct: float = 20.0) -> list[Trend]:
        """Every metric over its runs in time order, each value judged against its rolling baseline."""
        if self._db is None:
            return []  # no history yet
        rows = self._db.execute(
            "SELECT f.lab, f.scenario, f.figure, f.unit, r.id, r.created_at, f.value FROM figures f "
            "JOIN runs r ON r.id = f.run_id ORDER BY f.lab, f.scenario, f.figure, f.unit, r.created_at, r.id")
        series: dict[MetricKey, list[tuple[int, float, float]]] = {}
        for lab, scenario, figure, unit, run_id, created_at, value in rows:
            series.setdefault(MetricKey(lab, scenario, figure, unit), []).append((run_id, created_at, value))
        trends = []
        for key, points in series.items():
            direction = direction_of(key.figure, key.unit)
            verdicts = judge([v for _, _, v in points], direction, window, threshold_pct)
            trends.append(Trend(key, direction, [Point(r, t, v, b, c, flag)
                                                 for (r, t, v), (b, c, flag) in zip(points, verdicts)]))
        return trends


def render_history_html(trends: list[Trend], window: int, threshold_pct: float, runs: int) -> str:
    """One self-contained page: regressions first, then every metric's trend plot."""
    from .html import esc, image, page, table
    from .plots import trend_plot
    from .units import format_value

    ordered = sorted(trends, key=lambda t: (not t.regressed, t.key))
    regressed = [t for t in ordered if t.regressed]
    title = "xenlab nightly history"
    headline = (f"{len(regressed)} metric(s) regressed in the newest run" if regressed
                else "no regression in the newest run")
    body = [f"<h1>{esc(title)}</h1>",
            (f"<p class=\"meta\">{runs} runs · {len(trends)} metrics · baseline: median of the previous {window} "
             f"values · regression: worse by more than {threshold_pct:g}%</p>"),
            f"<div class=\"verdict {'fail' if regressed else 'pass'}\">{esc(headline)}</div>"]
    rows = []
    for t in ordered:
        p = t.latest
        change = "" if p.change_pct is None else f"{p.change_pct:+.1f}%"
        rows.append([esc(t.key), esc(f"{t.direction} is better"), esc(format_value(p.value, t.key.unit)),
                     esc(format_value(p.baseline, t.key.unit)) if p.baseline is not None else "(too few runs)",
                     esc(change), "<span class=\"fail\">regression</span>" if t.regressed else "ok"])
    body.append(table(["metric", "direction", "newest", "baseline", "change", "verdict"], rows))
    for t in ordered:
        uri = trend_plot([(p.created_at, p.value) for p in t.points], [p.baseline for p in t.points],
                         [p.regression for p in t.points], str(t.key), t.key.unit)
        body.append(f"<section><h3>{esc(t.key)}</h3>{image(uri, str(t.key))}</section>")
    return page(title, body)


def export_trends(trends: list[Trend]) -> str:
    """Machine-readable trends (for dashboards): JSON."""
    return json.dumps([{"lab": t.key.lab, "scenario": t.key.scenario, "figure": t.key.figure, "unit": t.key.unit,
                        "direction": t.direction, "regressed": t.regressed,
                        "points": [p.__dict__ for p in t.points]} for t in trends], indent=2)
