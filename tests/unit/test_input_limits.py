"""Loaders and validators against hostile input: results JSON, history databases,
qualification profiles, scenario planning limits, lab semantics. (The CLI view of the same
is tests/unit/test_bad_inputs.py.)"""

import json
import sqlite3

import pytest

from xenlab.errors import SpecError
from xenlab.report import write_reports
from xenlab.report.history import History, figures_of
from xenlab.report.qualification import KNOWN_METRICS, parse_profile
from xenlab.results import Figure, RunResults, ScenarioResult, StepResult, load_results
from xenlab.scenario import parse_scenario
from xenlab.scenario.model import MAX_PLANNED_STEPS, MAX_REPEAT_DEPTH
from xenlab.spec import default_subnet, parse_lab

T0 = 1_700_000_000.0


def run_with(**summary: Figure) -> RunResults:
    scenario = ScenarioResult(name="s", file="s.yaml", lab="x", toolstack="xl", started_at=T0, ended_at=T0 + 5,
                              outcome="passed", summary=summary,
                              steps=[StepResult(index=0, name="wait", kind="wait", started_at=T0, ended_at=T0 + 1,
                                                outcome="passed")])
    return RunResults(created_at=T0, lab="x", scenarios=[scenario])


# -- results ------------------------------------------------------------------------------
def refused_results(tmp_path, text: str) -> SpecError:
    path = tmp_path / "r.json"
    path.write_text(text)
    with pytest.raises(SpecError) as info:
        load_results(path)
    return info.value


def test_a_written_run_reads_back(tmp_path):
    run = run_with(downtime_p50=Figure(value=1.5, unit="s"))
    assert load_results(run.write(tmp_path / "r.json")) == run


@pytest.mark.parametrize("text,fragment", [
    ("[]", "the top level is a list"), ("null", "the top level is null"), ("3", "the top level is a number"),
    ('{"schema": "xenlab.results/1", "created_at": NaN}', "NaN is not a number JSON allows"),
    ('{"schema": "xenlab.results/1", "created_at": Infinity}', "Infinity is not a number"),
    ('{"schema": "xenlab.results/1", "created_at": 1e999}', "out of range"),
    ('{"schema": "xenlab.results/1", "created_at": -5}', "created_at: -5 is not a time"),
    ('{"schema": "nope"}', "results schema 'nope'"),
    ('{"schema": "xenlab.results/1", "lab": 3}', "lab: Input should be a valid string"),
    ("[" * 10_000 + "]" * 10_000, "nested more than 64 levels deep"),
])
def test_bad_results_files(tmp_path, text, fragment):
    assert fragment in str(refused_results(tmp_path, text))


def test_a_step_that_ends_before_it_starts(tmp_path):
    data = json.loads(run_with().model_dump_json(by_alias=True))
    data["scenarios"][0]["steps"][0]["ended_at"] = T0 - 1
    assert "scenarios.0.steps.0: ended_at" in str(refused_results(tmp_path, json.dumps(data)))


def test_broken_json_names_its_line(tmp_path):
    error = refused_results(tmp_path, '{\n "schema": "xenlab.results/1"\n "lab": "x"}')
    assert error.problems[0][0] == 3


# -- history ------------------------------------------------------------------------------
def test_a_file_that_is_not_sqlite_is_refused_untouched(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("my notes\n")
    with pytest.raises(SpecError) as info:
        History(path)
    assert "is not an SQLite database" in str(info.value) and path.read_text() == "my notes\n"


def test_another_programs_database_is_refused_untouched(tmp_path):
    path = tmp_path / "app.sqlite"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE users (name TEXT)")
    before = path.read_bytes()
    with pytest.raises(SpecError) as info:
        History(path)
    assert "of something else (tables: users)" in str(info.value) and path.read_bytes() == before


def test_a_directory_is_not_a_history(tmp_path):
    with pytest.raises(SpecError, match="is a directory"):
        History(tmp_path)


def test_reading_a_history_that_does_not_exist_creates_nothing(tmp_path):
    path = tmp_path / "sub" / "h.sqlite"
    with History(path) as db:
        assert db.trends() == [] and db.run_count() == 0
    assert not (tmp_path / "sub").exists()


def test_a_nan_figure_is_not_stored_as_a_measurement(tmp_path):
    run = run_with(downtime_p50=Figure(value=float("nan"), unit="s"), migrations=Figure(value=2, unit="count"))
    assert [row[1] for row in figures_of(run)] == ["migrations"]
    with History(tmp_path / "h.sqlite") as db:
        assert db.add(run)[1] is True


# -- qualification profiles ------------------------------------------------------------------
def test_a_threshold_in_the_wrong_unit_is_refused_at_load():
    with pytest.raises(SpecError) as info:
        parse_profile("name: p\nmetrics:\n  recovery_max: '< 3 MiB'\n", "p.yaml")
    assert info.value.problems[0][0] == 3 and "recovery_max is measured in s" in info.value.problems[0][1]


def test_an_unknown_metric_is_refused_before_any_report_is_written(tmp_path):
    profile = parse_profile("name: p\nmetrics:\n  downtme_p50: '< 3s'\n", "p.yaml")
    with pytest.raises(SpecError) as info:
        write_reports(run_with(), tmp_path / "out", profile)
    assert info.value.problems[0][0] == 3 and "did you mean downtime_p50" in info.value.problems[0][1]
    assert not (tmp_path / "out").exists()


def test_a_metric_the_run_itself_measures_is_known(tmp_path):
    profile = parse_profile("name: p\nmetrics:\n  parse_seconds: '< 3s'\n", "p.yaml")
    files = write_reports(run_with(parse_seconds=Figure(value=1.0, unit="s")), tmp_path / "out", profile)
    assert files.qualification is not None
    assert "downtime_p50" in KNOWN_METRICS and "bringup_toolstack" in KNOWN_METRICS


def test_known_metrics_are_what_the_runner_summarizes():
    from types import SimpleNamespace

    from xenlab.scenario.runner import _ScenarioRun

    run = _ScenarioRun.__new__(_ScenarioRun)  # only its summary of measured migrations and recoveries
    run.migrations = [SimpleNamespace(downtime_s=1.0, duration_s=20.0, heartbeats_lost=3)]
    run.recoveries = [12.0]
    summary, _ = run.summary()
    assert {name: figure.unit for name, figure in summary.items()}.items() <= KNOWN_METRICS.items()


# -- scenario planning limits ----------------------------------------------------------------
def nested(depth: int, times: int) -> str:
    text, indent = "name: t\nsteps:\n  - form_pool: {members: [h1, h2]}\n", "  "
    for _ in range(depth):
        text += f"{indent}- repeat:\n{indent}    times: {times}\n{indent}    steps:\n"
        indent += "      "
    return text + f"{indent}- wait: {{seconds: 1}}\n"


def test_repeats_nest_up_to_the_limit():
    assert parse_scenario(nested(MAX_REPEAT_DEPTH, 2)).planned_steps() == 1 + 2 ** MAX_REPEAT_DEPTH
    with pytest.raises(SpecError) as info:
        parse_scenario(nested(MAX_REPEAT_DEPTH + 1, 2))
    assert f"repeats nest more than {MAX_REPEAT_DEPTH} deep" in str(info.value)


def test_too_many_planned_steps():
    with pytest.raises(SpecError) as info:
        parse_scenario(nested(3, 1000))
    assert f"1000000001 steps, more than {MAX_PLANNED_STEPS}" in str(info.value)


def test_a_checkpoint_restore_forgets_the_pool_and_guests_made_after_it():
    parse_scenario("name: t\nsteps:\n  - checkpoint: {save: empty}\n  - form_pool: {members: [h1, h2]}\n"
                   "  - create_vm: {name: a, host: h1}\n  - checkpoint: {restore: empty}\n"
                   "  - form_pool: {members: [h1, h2]}\n  - create_vm: {name: a, host: h1}\n")
    with pytest.raises(SpecError, match="'a' is used before"):
        parse_scenario("name: t\nsteps:\n  - form_pool: {members: [h1, h2]}\n  - create_vm: {name: a, host: h1}\n"
                       "  - checkpoint: {restore: ready}\n  - migrate: {vm: a, to: h2}\n")


# -- lab semantics ----------------------------------------------------------------------------
def test_a_subnet_beside_the_other_networks_defaults_is_fine():
    taken = default_subnet("ok", 0)
    spec = parse_lab("name: ok\nnetworks:\n  lab:\n  storage: {subnet: 192.168.60.0/24}\nhosts:\n  h1:\n")
    assert spec.networks["storage"].subnet is not None and not spec.networks["storage"].subnet.overlaps(taken)


def test_a_negative_limit_for_one_accelerator_is_refused():
    with pytest.raises(SpecError) as info:
        parse_scenario("name: t\nsteps:\n  - form_pool: {members: [h1, h2]}\n  - create_vm: {name: a, host: h1}\n"
                       "  - migrate: {vm: a, to: h2}\n    expect: {downtime: {tcg: '< 12s', kvm: '< -1s'}}\n")
    assert info.value.problems[0][0] == 6 and "has a negative limit" in info.value.problems[0][1]
