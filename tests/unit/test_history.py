"""Nightly history: a regression against the rolling baseline is flagged, a stable series is not."""

from __future__ import annotations

import random
import re

import pytest
from click.testing import CliRunner
from test_report_samples import T0, synthetic_run

from xenlab.cli import main
from xenlab.report.history import History, direction_of, judge
from xenlab.results import Figure, RunResults, ScenarioResult

DAY = 86_400.0


def nightly(db: History, values: list[float], figure: str = "downtime_p50", unit: str = "s") -> None:
    for night, value in enumerate(values):
        scenario = ScenarioResult(name="live-migration", file="scenarios/live-migration.yaml", lab="xen-pool2",
                                  toolstack="xl", started_at=T0, ended_at=T0 + 60, outcome="passed",
                                  summary={figure: Figure(value=value, unit=unit)})
        db.add(RunResults(created_at=T0 + night * DAY, lab="xen-pool2", accel="tcg", scenarios=[scenario]))


def stable(n: int, level: float, seed: int = 1) -> list[float]:
    rng = random.Random(seed)
    return [round(level * rng.uniform(0.95, 1.05), 3) for _ in range(n)]


def test_a_stable_series_is_not_flagged(tmp_path):
    with History(tmp_path / "h.sqlite") as db:
        nightly(db, stable(14, 2.0))
        [trend] = db.trends(window=7, threshold_pct=20)
    assert not trend.regressed and not any(p.regression for p in trend.points)
    assert trend.points[0].baseline is None and trend.points[-1].baseline is not None


def test_a_downtime_jump_is_flagged_against_the_median_of_the_previous_runs(tmp_path):
    with History(tmp_path / "h.sqlite") as db:
        nightly(db, stable(10, 2.0) + [2.9])
        [trend] = db.trends(window=7, threshold_pct=20)
    latest = trend.latest
    assert trend.regressed and trend.direction == "lower"
    assert 1.9 <= latest.baseline <= 2.1 and latest.change_pct > 20


def test_a_throughput_drop_is_a_regression_and_a_rise_is_not(tmp_path):
    with History(tmp_path / "drop.sqlite") as db:
        nightly(db, stable(8, 100.0) + [60.0], figure="throughput", unit="MiB/s")
        assert db.trends()[0].regressed
    with History(tmp_path / "rise.sqlite") as db:
        nightly(db, stable(8, 100.0) + [160.0], figure="throughput", unit="MiB/s")
        assert not db.trends()[0].regressed


def test_too_short_a_history_judges_nothing():
    assert judge([1.0, 1.0, 5.0], "lower", window=7, threshold_pct=20) == [(None, None, False)] * 3
    assert judge([0.0, 0.0, 0.0, 1.0], "lower", 7, 20)[-1][2] is True  # from nothing lost to something lost


def test_the_same_run_is_stored_once_and_bringup_is_tracked(tmp_path):
    run = synthetic_run()
    with History(tmp_path / "h.sqlite") as db:
        first, added = db.add(run)
        again, added_again = db.add(run)
        assert (added, added_again, first == again, db.run_count()) == (True, False, True, 1)
        keys = {(t.key.scenario, t.key.figure) for t in db.trends()}
    assert ("(bring-up)", "ready") in keys and ("(bring-up)", "h1.toolstack") in keys
    assert ("live-migration", "downtime_p50") in keys


@pytest.mark.parametrize("figure,unit,direction", [
    ("downtime_p50", "s", "lower"), ("heartbeats_lost", "count", "lower"), ("throughput", "MiB/s", "higher"),
    ("integrity", "bool", "higher"), ("success_rate", "%", "higher"), ("error_rate", "%", "lower"),
    ("records", "count", "lower"),
])
def test_direction_rule(figure, unit, direction):
    assert direction_of(figure, unit) == direction


def test_cli_adds_runs_and_exits_3_on_a_regression(tmp_path):
    runner = CliRunner()
    db = tmp_path / "h.sqlite"
    values = stable(8, 2.0) + [3.5]
    for night, value in enumerate(values):
        run = synthetic_run(downtimes=[value], created_at=T0 + night * DAY)
        path = run.write(tmp_path / f"run{night}.json")
        added = runner.invoke(main, ["history", "add", str(path), "--db", str(db)])
        assert added.exit_code == 0 and "stored run" in added.output, added.output
    again = runner.invoke(main, ["history", "add", str(path), "--db", str(db)])
    assert "already stored" in again.output
    report = runner.invoke(main, ["history", "report", "--db", str(db), "--out", str(tmp_path / "out"),
                                  "--window", "7", "--threshold", "20"])
    assert report.exit_code == 3, report.output
    assert "REGRESSION" in report.output
    html = (tmp_path / "out" / "history.html").read_text()
    assert not re.search(r"https?://", html) and "metric(s) regressed in the newest run" in html
    assert html.count("data:image/png;base64,") >= 3


def test_cli_exits_0_on_a_stable_history(tmp_path):
    runner = CliRunner()
    db = tmp_path / "h.sqlite"
    for night, value in enumerate(stable(9, 2.0)):
        path = synthetic_run(downtimes=[value], created_at=T0 + night * DAY).write(tmp_path / f"run{night}.json")
        runner.invoke(main, ["history", "add", str(path), "--db", str(db)])
    report = runner.invoke(main, ["history", "report", "--db", str(db)])
    assert report.exit_code == 0, report.output
    assert "REGRESSION" not in report.output
