"""bench/targets.py's verdicts and figures: a target without a figure is "not measured", never
met; only passed moves count, and a move whose downtime was not measured adds no downtime."""

import importlib.util
import sys
from pathlib import Path

import pytest

from xenlab.results import Figure, ScenarioResult, StepResult

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def bench():
    sys.path.insert(0, str(REPO / "bench"))
    try:
        spec = importlib.util.spec_from_file_location("targets_bench", REPO / "bench" / "targets.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # its dataclasses look their module up
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(REPO / "bench"))
    return module


def step(kind: str, outcome: str = "passed", substeps=(), **figures) -> StepResult:
    return StepResult(index=0, name=kind, kind=kind, started_at=0.0, ended_at=1.0, outcome=outcome,
                      figures={k: Figure(value=v, unit="s") for k, v in figures.items()}, substeps=list(substeps))


def test_verdicts(bench):
    target = next(t for t in bench.TARGETS if t.key == "pv_migration")
    assert target.verdict(None) == "not measured"
    assert target.verdict(15.0) == "met"
    assert target.verdict(31.9) == "not met"


def test_table_shows_every_target_and_calls_missing_figures_not_measured(bench):
    lines = bench.table({"pv_migration": 31.9, "readme": 9 * 60 + 52})
    assert len(lines) == 1 + len(bench.TARGETS)
    by_key = dict(zip([t.key for t in bench.TARGETS], lines[1:], strict=True))
    assert "31.9 s" in by_key["pv_migration"] and by_key["pv_migration"].endswith("not met")
    assert "9.9 min" in by_key["readme"] and "<= 6.0 min" in by_key["readme"]
    assert by_key["suite"].endswith("not measured") and by_key["hvm_migration"].endswith("not measured")
    assert not any(line.endswith("  met") for line in lines[1:])  # "not met" and "not measured" only


def test_scenario_figures_count_passed_moves_and_measured_downtimes_only(bench):
    moves = [step("migrate", duration=30.0, downtime=3.0), step("migrate", duration=40.0, downtime=None),
             step("migrate", outcome="failed", duration=200.0, downtime=50.0)]
    scenario = ScenarioResult(name="s", file="s.yaml", lab="l", toolstack="xl", started_at=0.0, ended_at=1.0,
                              outcome="failed",
                              steps=[step("form_pool"), step("create_vm", first_heartbeat=38.5),
                                     step("repeat", substeps=moves)])
    figures = bench.scenario_figures(scenario)
    assert figures == {"first_heartbeat": [38.5], "migration": [30.0, 40.0], "downtime": [3.0]}
    assert bench.median_of(figures["migration"]) == 35.0 and bench.median_of([]) is None
