"""Sharding: whole groups per shard, balanced and deterministic; merge checks a run's shards."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import get_args

import pytest
from click.testing import CliRunner
from test_report_samples import T0, synthetic_run

from xenlab.cli import main
from xenlab.errors import InvalidInput, SpecError
from xenlab.matrix import load_matrix, plan_items, restrict
from xenlab.report.history import History, lab_figures_of
from xenlab.report.merge import merge_shards
from xenlab.report.shard_files import ShardManifest, finish_manifest, write_manifest
from xenlab.results import Outcome, ScenarioResult
from xenlab.shards import PlanItem, ShardRef, parse_shard, plan_digest, plan_shards

REPO = Path(__file__).resolve().parents[2]


def items_of(groups: dict[str, list[float]]) -> list[PlanItem]:
    return [PlanItem(f"{g}::t{i}", g, s, "declared") for g, times in groups.items() for i, s in enumerate(times)]


# -- the planner --------------------------------------------------------------------------
def test_a_shard_is_parsed_as_K_of_N_and_nonsense_is_refused():
    assert parse_shard("2/3") == ShardRef(2, 3) and str(parse_shard(" 1 / 1 ")) == "1/1"
    for bad in ("0/3", "4/3", "3", "a/b", "1/0", "-1/2", ""):
        with pytest.raises(InvalidInput, match="--shard"):
            parse_shard(bad)


def test_groups_stay_whole_and_every_item_is_on_exactly_one_shard():
    rng = random.Random(4)
    groups = {f"lab {n}": [rng.uniform(1, 300) for _ in range(rng.randint(1, 6))] for n in range(17)}
    items = items_of(groups)
    shards = plan_shards(items, 4)
    assert [s.ref for s in shards] == [ShardRef(k, 4) for k in range(1, 5)]
    placed = [i.name for s in shards for i in s.items]
    assert sorted(placed) == sorted(i.name for i in items)
    for name in groups:
        assert sum(any(g.name == name for g in s.groups) for s in shards) == 1


def test_the_plan_is_balanced_by_time_not_by_count():
    # one long lab and many short ones: the long one gets a shard to itself
    items = items_of({"lab long": [600.0], **{f"lab s{n}": [100.0] for n in range(6)}})
    loads = sorted(s.seconds for s in plan_shards(items, 2))
    assert loads == [600.0, 600.0]
    # a lab's bring-up counts once per group
    shards = plan_shards(items_of({"lab a": [10.0, 10.0], "lab b": [30.0]}), 2, {"lab a": 100.0})
    assert [(s.groups[0].name, s.seconds) for s in shards] == [("lab a", 120.0), ("lab b", 30.0)]


def test_lpt_stays_within_four_thirds_of_the_lower_bound():
    rng = random.Random(9)
    for _ in range(50):
        items = items_of({f"g{n}": [rng.uniform(1, 500)] for n in range(rng.randint(1, 30))})
        count = rng.randint(1, 6)
        loads = [s.seconds for s in plan_shards(items, count)]
        bound = max(sum(i.seconds for i in items) / count, max(i.seconds for i in items))
        assert max(loads) <= bound * 4 / 3 + 1e-9


def test_the_plan_is_the_same_on_every_machine_and_keeps_the_suites_order():
    items = items_of({"module b": [5.0, 5.0], "lab x": [50.0], "module a": [5.0], "lab y": [50.0]})
    first, again = plan_shards(items, 2), plan_shards(list(items), 2)
    assert first == again
    assert plan_digest(items, 2) == plan_digest(list(items), 2) != plan_digest(items, 3)
    # within a shard, groups keep the order the suite gave them
    for shard in first:
        order = [g.name for g in shard.groups]
        assert order == sorted(order, key=[i.group for i in items].index)
    # more shards than groups: the extra shards are empty, never an error
    assert [len(s.groups) for s in plan_shards(items_of({"lab x": [1.0]}), 3)] == [1, 0, 0]


def test_a_shard_describes_what_it_holds_and_its_expected_time():
    [shard] = plan_shards(items_of({"lab xen-pool2": [120.0, 60.0]}), 1, {"lab xen-pool2": 180.0})
    assert shard.describe() == ["shard 1/1: 1 group(s), 2 item(s), expected 6.0 min",
                                "  lab xen-pool2: 2 item(s), 6.0 min (declared)"]


# -- the shipped matrix -------------------------------------------------------------------
def test_matrix_combinations_are_items_of_their_own_with_history_else_the_files_estimate():
    plan = load_matrix(REPO / "qualification/matrix-firmware-nic.yaml", 8000, 2)
    items = plan_items(plan, lambda name: 900.0 if name == "xen-pool2-uefi-e1000" else None)
    assert len({i.group for i in items}) == len(plan.combinations) == 6
    assert {(i.name, i.source) for i in items if i.source == "history"} == {("xen-pool2-uefi-e1000", "history")}
    assert {i.seconds for i in items if i.source == "declared"} == {480.0}  # estimate_minutes: 8
    shards = plan_shards(items, 3)
    mine = restrict(plan, [i.name for i in shards[0].items])
    assert [c.name for c in mine.combinations] == [i.name for i in shards[0].items]
    assert sorted(n for w in mine.waves for n in w) == sorted(c.name for c in mine.combinations)


# -- merge: one run's shards, each once ----------------------------------------------------
def shard_dir(tmp_path, index: int, count: int = 2, run_id: str = "night-7", finished: bool = True,
              scenarios: list[tuple[str, str]] = (("s", "passed"),)):
    directory = tmp_path / f"shard{index}-{run_id}"
    results = synthetic_run()
    results = results.model_copy(update={"scenarios": [
        ScenarioResult(name=name, file="x.yaml", lab="xen-pool2", toolstack="xl", started_at=T0, ended_at=T0 + 5,
                       outcome=outcome) for name, outcome in scenarios]})
    results.write(directory / "results.json")
    (directory / "junit.xml").write_text('<testsuites><testsuite name="pytest" tests="1"><testcase classname="c" '
                                         f'name="t{index}"/></testsuite></testsuites>')
    items = [name for name, _ in scenarios]
    manifest = ShardManifest(kind="pytest", run_id=run_id, index=index, count=count, machine=f"m{index}",
                             items=items)
    write_manifest(manifest, directory)
    if finished:
        finish_manifest(manifest, directory, 0, {name: outcome for name, outcome in scenarios})
    return directory


# the honest-verdicts change adds "not_measured"; until it is merged, "error" stands for a non-passing outcome
NOT_PASSED = "not_measured" if "not_measured" in get_args(Outcome) else "error"


def test_merged_scenarios_name_their_machine_and_shard_and_keep_not_measured(tmp_path):
    one = shard_dir(tmp_path, 1, scenarios=[("a", "passed"), ("b", "failed")])
    two = shard_dir(tmp_path, 2, scenarios=[("c", NOT_PASSED)])
    merged = merge_shards([one, two])
    got = [(s.name, s.outcome, s.shard, s.machine) for s in merged.results.scenarios]
    assert got == [("a", "passed", "1/2", "m1"), ("b", "failed", "1/2", "m1"), ("c", NOT_PASSED, "2/2", "m2")]
    assert not merged.incomplete and merged.results.run_id == "night-7"
    assert b'name="xenlab.machine" value="m2"' in merged.junit


def test_the_same_shard_twice_is_refused_naming_its_file(tmp_path):
    one = shard_dir(tmp_path, 1)
    copy = tmp_path / "copy"
    copy.mkdir()
    (copy / "shard.json").write_text((one / "shard.json").read_text())
    with pytest.raises(SpecError, match=r"copy/shard.json: shard 1/2 of run night-7 was given already"):
        merge_shards([one, copy])
    done = CliRunner().invoke(main, ["report", "merge", str(one), str(copy), "--out", str(tmp_path / "out")])
    assert done.exit_code == 2 and "given already" in done.output and not (tmp_path / "out").exists()


def test_shards_of_other_runs_or_counts_and_directories_without_a_manifest_are_refused(tmp_path):
    with pytest.raises(SpecError, match="run_id 'night-8' differs"):
        merge_shards([shard_dir(tmp_path, 1), shard_dir(tmp_path, 2, run_id="night-8")])
    with pytest.raises(SpecError, match="count 3 differs"):
        merge_shards([shard_dir(tmp_path, 1, run_id="r"), shard_dir(tmp_path, 2, count=3, run_id="r")])
    (tmp_path / "empty").mkdir()
    with pytest.raises(SpecError, match="no shard manifest"):
        merge_shards([tmp_path / "empty"])
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "shard.json").write_text(json.dumps({"schema": "xenlab.shard/1", "kind": "pytest"}))
    with pytest.raises(SpecError, match="not a shard manifest"):
        merge_shards([tmp_path / "bad"])


def test_missing_and_broken_off_shards_are_named_never_dropped(tmp_path):
    one = shard_dir(tmp_path, 1, count=3)
    two = shard_dir(tmp_path, 2, count=3, finished=False)
    merged = merge_shards([one, two])
    assert [(r.shard, r.status) for r in merged.results.shards] == [("1/3", "reported"), ("2/3", "failed"),
                                                                    ("3/3", "missing")]
    assert "broke off" in merged.results.shards[1].reason
    assert b'name="shard 3/3"' in merged.junit and b"failures=\"2\"" in merged.junit
    done = CliRunner().invoke(main, ["report", "merge", str(one), str(two), "--out", str(tmp_path / "out")])
    assert done.exit_code == 1 and "shard 3/3 missing" in done.output
    html = (tmp_path / "out" / "report.html").read_text()
    assert "2 of 3 shards missing or broken off" in html


def test_a_shard_that_lost_items_its_plan_gave_it_has_failed(tmp_path):
    one = shard_dir(tmp_path, 1, count=1)
    manifest = ShardManifest.model_validate_json((one / "shard.json").read_text())
    finish_manifest(manifest.model_copy(update={"items": ["s", "lost-one"]}), one, 1, {"s": "passed"})
    [record] = merge_shards([one]).results.shards
    assert record.status == "failed" and "lost-one" in record.reason


# -- history: durations for the planner, a merged run's labs kept apart ---------------------
def test_history_gives_median_durations_and_bringups(tmp_path):
    with History(tmp_path / "h.sqlite") as db:
        for night in range(3):
            db.add(synthetic_run(created_at=T0 + night * 86400, seed=night))
        durations = db.durations()
    migration = synthetic_run().scenarios[0]
    assert durations.seconds[("xen-pool2", migration.name)] == pytest.approx(
        migration.ended_at - migration.started_at)
    assert durations.bringup["xen-pool2"] == 52.3
    assert durations.span_of("xen-pool2") > 52.3 and durations.span_of("elsewhere") is None


def test_a_merged_run_of_several_labs_stores_each_labs_figures_under_its_lab():
    run = synthetic_run()
    other = run.scenarios[0].model_copy(update={"name": "other", "lab": "xen-pool2-uefi-e1000"})
    merged = run.model_copy(update={"lab": "", "scenarios": [*run.scenarios, other],
                                    "bringup": {f"xen-pool2/{h}": s for h, s in run.bringup.items()}})
    rows = lab_figures_of(merged)
    assert {r[0] for r in rows if r[1] == "other"} == {"xen-pool2-uefi-e1000"}
    assert ("xen-pool2", "(bring-up)", "ready", "s", 52.3) in rows
    assert all(r[0] for r in rows)  # no figure under a lab of no name


def matrix_shard(tmp_path, index: int, rows: list[tuple[str, str]], count: int = 2, order=("c1", "c2", "c3")):
    from xenlab.qualify.matrix_run import MatrixReport, MatrixRow, write_matrix_report

    directory = tmp_path / f"matrix{index}"
    report = MatrixReport(profile="quick", matrix="m", axes={"nic": ["virtio"]}, started_at=T0, ended_at=T0 + 60,
                          rows=[MatrixRow(name=n, hardware={"nic": "virtio"}, verdict=v, seconds=480.0)
                                for n, v in rows])
    write_matrix_report(report, directory)
    (directory / rows[0][0]).mkdir(exist_ok=True)
    (directory / rows[0][0] / "qualification.html").write_text("<html></html>")
    manifest = ShardManifest(kind="matrix", run_id="m-1", index=index, count=count, machine=f"box{index}",
                             items=[n for n, _ in rows], plan_order=list(order))
    finish_manifest(manifest, directory, 0, dict(rows))
    return directory


def test_a_matrix_merge_puts_every_combination_in_one_table_naming_where_it_ran(tmp_path):
    one = matrix_shard(tmp_path, 1, [("c1", "passed"), ("c3", "failed")])
    two = matrix_shard(tmp_path, 2, [("c2", "passed")])
    out = tmp_path / "merged"
    done = CliRunner().invoke(main, ["report", "merge", str(one), str(two), "--out", str(out)])
    assert done.exit_code == 0, done.output
    merged = json.loads((out / "matrix.json").read_text())
    assert [(r["name"], r["verdict"], r["shard"], r["machine"]) for r in merged["rows"]] == [
        ("c1", "passed", "1/2", "box1"), ("c2", "passed", "2/2", "box2"), ("c3", "failed", "1/2", "box1")]
    assert (out / "c1" / "qualification.html").is_file()  # each combination's own report beside the table
    assert "box2" in (out / "matrix.html").read_text() and (out / "junit.xml").is_file()
    # a shard that never came: its combinations are rows that say so, and the merge exits 1
    alone = CliRunner().invoke(main, ["report", "merge", str(one), "--out", str(tmp_path / "alone")])
    assert alone.exit_code == 1
    rows = json.loads((tmp_path / "alone" / "matrix.json").read_text())["rows"]
    assert [(r["name"], r["verdict"]) for r in rows] == [("c1", "passed"), ("c2", "not_run"), ("c3", "failed")]
