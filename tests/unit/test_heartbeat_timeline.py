"""A guest's heartbeats around an event: compacted into buckets with the silence exact,
plotted per event, and the figures beside them named so a reader needs no source code."""

from __future__ import annotations

import base64
import io
import json

import matplotlib.image
import pytest
from test_report_samples import heartbeat_series

from xenlab.metrics import bucket_counts, bucket_width, downtime_around, recovery_time
from xenlab.report import plots
from xenlab.results import (
    FIGURE_MEANINGS,
    MAX_TIMELINE_BUCKETS,
    SCHEMA,
    HeartbeatTimeline,
    figure_meaning,
    figure_meanings,
    load_results,
)
from xenlab.scenario.measure import TIMELINE_AFTER_S, TIMELINE_BEFORE_S, heartbeat_timeline
from xenlab.scenario.model import FIGURES

T = 1_764_000_000.0
H = 0.005  # half a heartbeat slot: steady beats between bucket edges, not on them


# -- compaction -----------------------------------------------------------------------------
def test_steady_heartbeats_count_ten_per_100_ms_bucket():
    series = heartbeat_series(T, T + 10, [], jitter_s=0.0005)
    buckets = bucket_counts(series, T + 1, T + 6)
    assert buckets.bucket_s == 0.1 and len(buckets.counts) == 50
    assert sum(buckets.counts) == 500 and set(buckets.counts) <= {9, 10, 11}


def test_a_silence_is_a_run_of_empty_buckets_between_exact_ends():
    series = heartbeat_series(T + H, T + 20, [(T + 8.0, T + 10.5, False)], jitter_s=0.0)
    stats = downtime_around(series, T + 5, T + 15)
    assert (stats.gap_start, stats.gap_end) == pytest.approx((T + 7.995, T + 10.505))  # exact, not to a bucket
    counts = bucket_counts(series, T + 5, T + 15).counts
    assert counts[30:55] == [0] * 25 and counts[29] == 10 and counts[55] == 10


def test_jitter_duplicates_and_drops_change_the_counts_not_the_total_of_what_arrived():
    series = heartbeat_series(T, T + 10, [], seed=3, jitter_s=0.004, lose_every=7)
    doubled = series + series[::5]  # duplicates do not count twice
    buckets = bucket_counts(doubled, T, T + 10)
    assert sum(buckets.counts) == len(series)
    assert min(buckets.counts) < 10 and max(buckets.counts) <= 11  # a dropped beat shows, jitter moves beats


def test_a_long_window_gets_wider_buckets_and_stays_bounded():
    assert bucket_width(120.0, MAX_TIMELINE_BUCKETS) == pytest.approx(0.1)
    assert bucket_width(150.0, MAX_TIMELINE_BUCKETS) == pytest.approx(0.2)
    assert bucket_width(3600.0, MAX_TIMELINE_BUCKETS) == pytest.approx(3.0)
    series = heartbeat_series(T + H, T + 400, [(T + 100, T + 130, False)], jitter_s=0.0)
    buckets = bucket_counts(series, T, T + 400, MAX_TIMELINE_BUCKETS)
    assert len(buckets.counts) <= MAX_TIMELINE_BUCKETS and buckets.bucket_s == pytest.approx(0.4)
    assert sum(buckets.counts) == len(series) and buckets.counts[251:324] == [0] * 73


def test_a_partial_last_bucket_is_left_out_it_would_read_low():
    series = heartbeat_series(T + H, T + 10, [], jitter_s=0.0)
    assert bucket_counts(series, T, T + 1.05).counts == [10] * 10
    assert bucket_counts(series, T + 1, T + 1).counts == []


# -- the recorded timeline ------------------------------------------------------------------
def migration(downtime: float, read_after: float = 30.0):
    started, duration = T + 100, 17.4
    series = heartbeat_series(T + 60, started + read_after, [(started + 10, started + 10 + downtime, False)],
                              jitter_s=0.002)
    stats = downtime_around(series, started, started + duration)
    marks = [(started, "migration start"), (started + duration, "migration end"), (T, "long before")]
    timeline = heartbeat_timeline("vm1", "migration of vm1 h1 -> h2", series, started + read_after, started,
                                  started + duration, marks, (stats.gap_start, stats.gap_end))
    return timeline, stats, started, duration


def test_a_migration_timeline_spans_its_margins_keeps_the_silence_exact_and_drops_far_marks():
    timeline, stats, started, duration = migration(2.4)
    assert timeline.start == pytest.approx(started - TIMELINE_BEFORE_S)
    assert timeline.end == pytest.approx(started + duration + TIMELINE_AFTER_S, abs=0.1)
    assert timeline.silence_s == stats.downtime_s and timeline.silence_s == pytest.approx(2.4, abs=0.02)
    assert [m.label for m in timeline.marks] == ["migration start", "migration end"]  # "long before" is outside
    again = HeartbeatTimeline.model_validate_json(timeline.model_dump_json())
    assert again == timeline and len(timeline.model_dump_json()) < 2000  # 10 ms beats, a few hundred numbers


def test_a_timeline_ends_at_the_read_not_after_it_and_starts_at_the_first_heartbeat():
    timeline, _, started, _ = migration(2.0, read_after=14.0)  # read 14 s in: the call had not ended
    assert timeline.end <= started + 14.0 and timeline.end == pytest.approx(started + 14.0, abs=0.1)
    series = heartbeat_series(T + 99, T + 110, [], jitter_s=0.0)  # the guest started 1 s before the event
    late = heartbeat_timeline("vm9", "e", series, T + 110, T + 100, T + 101, [], (None, None), note="no silence")
    assert late.start == pytest.approx(T + 99, abs=1e-6) and late.silence_s is None
    assert len(late.counts) == 70 and sum(late.counts) == 700  # from its first heartbeat to 5 s after the event


def test_a_guest_not_back_yet_has_an_open_silence_and_a_failover_keeps_its_restart():
    cut = T + 100
    series = heartbeat_series(T + 80 + H, cut + 20, [(cut, cut + 60, True)], jitter_s=0.0)
    recovery = recovery_time(series, cut, until=cut + 20)
    assert recovery.seconds is None and recovery.stopped_at is not None
    timeline = heartbeat_timeline("vm1", "cut: power_cut on h1", series, cut + 20, cut, cut,
                                  [(cut, "power_cut struck")], (recovery.stopped_at, None), note=recovery.reason)
    row = plots.timeline_rows([timeline])["cut: power_cut on h1"][0]
    assert plots.silence_label(row) == f"silence of {timeline.end - recovery.stopped_at:.2f} s or more (no heartbeat since)"
    back = heartbeat_series(T + 80 + H, cut + 70, [(cut, cut + 60, True)], jitter_s=0.0)
    done = recovery_time(back, cut, until=cut + 70)
    assert done.restarted and done.resumed_at == pytest.approx(cut + 60)


# -- the plot data ----------------------------------------------------------------------------
def test_plot_rates_are_heartbeats_per_second_at_seconds_since_the_event():
    timeline, _, started, _ = migration(3.0)
    [row] = plots.timeline_rows([timeline])["migration of vm1 h1 -> h2"]
    edges, rates = plots.heartbeat_rates(row, zero=started)
    assert edges[0] == pytest.approx(-TIMELINE_BEFORE_S) and len(edges) == len(rates) + 1
    steady = [r for e, r in zip(edges, rates) if e < 9.5]
    assert sum(steady) / len(steady) == pytest.approx(100, abs=2)  # one every 10 ms
    silent = [r for e, r in zip(edges, rates) if 10.05 <= e <= 12.85]
    assert silent and set(silent) == {0}
    assert plots.silence_label(row) == f"silence {timeline.silence_s:.2f} s"


def test_one_plot_per_event_with_a_row_per_guest():
    rows = []
    for guest, downtime in (("vm1", 1.0), ("vm2", 4.0), ("vm3", 0.5)):
        series = heartbeat_series(T, T + 30, [(T + 12, T + 12 + downtime, False)], jitter_s=0.002)
        stats = downtime_around(series, T + 10, T + 16)
        rows.append(heartbeat_timeline(guest, "evacuate h1", series, T + 30, T + 10, T + 16,
                                       [(T + 10, "migration start")], (stats.gap_start, stats.gap_end)))
    events = plots.timeline_rows(rows)
    assert list(events) == ["evacuate h1"] and [r.guest for r in events["evacuate h1"]] == ["vm1", "vm2", "vm3"]
    three = plots.heartbeat_plot("evacuate h1", events["evacuate h1"])
    one = plots.heartbeat_plot("evacuate h1", events["evacuate h1"][:1])
    tall, short = (matplotlib.image.imread(io.BytesIO(base64.b64decode(u.split(",", 1)[1])), format="png")
                   for u in (three, one))
    assert tall.shape[0] > 2 * short.shape[0] and tall.shape[1] == short.shape[1]
    assert plots.heartbeat_plot("nothing", []) is None


def test_marks_at_one_moment_share_a_line():
    merged = plots._merged_marks([(5.0, "h1 fenced"), (5.0, "h1 detected"), (9.0, "recovered")], 0.1)
    assert merged == [(5.0, "h1 detected, h1 fenced"), (9.0, "recovered")]


# -- what the figures mean ------------------------------------------------------------------
def test_every_figure_a_step_measures_has_a_meaning():
    measured = {name for figures in FIGURES.values() for name in figures}
    assert [name for name in measured if not figure_meaning(name)] == []
    assert "never arrived" in figure_meaning("heartbeats_lost") and "paused" in figure_meaning("heartbeats_lost")
    assert "10 ms heartbeat slots" in figure_meaning("heartbeat_slots_empty")
    assert figure_meaning("3.downtime") == FIGURE_MEANINGS["downtime"]  # JUnit's step-numbered name
    assert figure_meaning("2.4.heartbeat_slots_empty") == FIGURE_MEANINGS["heartbeat_slots_empty"]  # a repeat's substep
    assert figure_meaning("2.x.downtime") == ""
    assert figure_meaning("downtime_p50").startswith("median of downtime")
    assert figure_meaning("heartbeats_missed").startswith("the old name of heartbeat_slots_empty")
    assert figure_meaning("my_own_metric") == ""
    assert [n for n, _ in figure_meanings(["downtime_p50", "downtime_max", "x"])] == [
        "downtime_p50", "downtime", "downtime_max"]


def test_an_old_results_file_is_read_with_the_new_figure_names(tmp_path):
    old = {"schema": "xenlab.results/1", "created_at": T, "lab": "x", "scenarios": [{
        "name": "s", "file": "s.yaml", "lab": "x", "toolstack": "xl", "started_at": T, "ended_at": T + 30,
        "outcome": "passed", "steps": [{"index": 0, "name": "r", "kind": "repeat", "started_at": T,
                                        "ended_at": T + 20, "outcome": "passed", "substeps": [{
            "index": 0, "name": "migrate vm1 -> h2", "kind": "migrate", "started_at": T, "ended_at": T + 20,
            "outcome": "failed", "figures": {"heartbeats_missed": {"value": 1040, "unit": "count"},
                                             "heartbeats_lost": {"value": 61, "unit": "count"}},
            "expectations": [{"figure": "heartbeats_missed", "expected": "< 500", "passed": False,
                              "measured": {"value": 1040, "unit": "count"}}]}]}]}]}
    path = tmp_path / "old.json"
    path.write_text(json.dumps(old))
    results = load_results(path)
    [step] = results.scenarios[0].steps[0].substeps
    assert results.schema_ == SCHEMA and list(step.figures) == ["heartbeat_slots_empty", "heartbeats_lost"]
    assert step.figures["heartbeat_slots_empty"].value == 1040 and step.expectations[0].figure == "heartbeat_slots_empty"
    assert step.timelines == []


def test_junit_names_a_repeats_substeps_by_step_and_round():
    from xenlab.fixtures.scenarios import labelled_steps
    from xenlab.results import StepResult

    def step(index, *substeps):
        return StepResult(index=index, name=f"s{index}", kind="migrate", started_at=0.0, ended_at=1.0,
                          outcome="passed", substeps=list(substeps))

    steps = [step(0), step(1), step(2, step(0), step(1), step(2))]
    assert [label for label, _ in labelled_steps(steps)] == ["0", "1", "2", "2.0", "2.1", "2.2"]
