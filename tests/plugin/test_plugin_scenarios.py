"""Scenario files as pytest items on a sim lab: exactly as `xenlab run` runs them.

The outer test runs `pytest scenarios/host-failover.yaml --lab labs/xapi-sim-pool3.yaml`
from the repository root in a child process, as a user would type it; the simulated
pool runs inside that child (its HA waits out the real 30 s detection timeout)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_pytest_runs_a_scenario_file_on_a_sim_lab(tmp_path):
    env = {**os.environ, "XENLAB_RUN_DIR": str(tmp_path / "runs"),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    child = subprocess.run(
        [sys.executable, "-m", "pytest", "scenarios/host-failover.yaml", "--lab", "labs/xapi-sim-pool3.yaml",
         "-p", "no:cacheprovider", "--xenlab-report", str(tmp_path / "out"), "-q", "-rs",
         "--xenlab-allow-unmeasured"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert child.returncode == 0, child.stdout + child.stderr
    # a simulated guest's disk is not read: not measured, reported as skipped with the reason, never passed
    assert "1 skipped" in child.stdout and "lab xapi-sim-pool3: up in" in child.stdout
    assert "not measured on lab xapi-sim-pool3" in child.stdout and "data of vm1 intact" in child.stdout
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    (scenario,) = results["scenarios"]
    assert (scenario["name"], scenario["toolstack"], scenario["outcome"]) == ("host-failover", "xapi", "not_measured")
    assert [h["name"] for h in results["inventory"]] == ["h1", "h2", "h3"]  # the session took it, as `run` does
    restart = next(s for s in scenario["steps"] if s["name"] == "the pool restarts vm1 on h2")
    assert restart["figures"]["recovery"]["value"] >= 29  # measured by the runner from the guest's heartbeats
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())  # nothing left behind


def test_the_repositorys_conftest_shares_the_example_fixtures(tmp_path):
    """In this checkout, pytest sees the plugin's fixtures and conftest_example.py's (from the
    top-level conftest.py), so `fixtures/test_pool_example.py` collects in place; nothing boots."""
    env = {**os.environ, "XENLAB_RUN_DIR": str(tmp_path / "runs")}

    def pytest_in_repo(*args: str) -> str:
        child = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args], cwd=REPO, env=env,
                               capture_output=True, text=True, timeout=120, check=False)
        assert child.returncode == 0, child.stdout + child.stderr
        return child.stdout

    fixtures = pytest_in_repo("--fixtures", "fixtures/test_pool_example.py")
    assert "pool_hosts [session scope] -- conftest.py" in fixtures and "xl_info -- conftest.py" in fixtures
    assert "vm_factory -- xenlab/pytest_plugin.py" in fixtures
    collected = pytest_in_repo("--collect-only", "-q", "fixtures/test_pool_example.py")
    assert "4 tests collected" in collected
    assert not any((tmp_path / "runs").glob("*"))  # no lab was started
