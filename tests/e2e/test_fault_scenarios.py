"""Faults during operations, on the real TCG lab, through `xenlab run` as a user runs them:
a power cut of the source during a live migration, the shared SR's NFS server stopped
while a guest writes, and a partition of the source during a live migration. Each run
starts from the lab's `ready` checkpoint and must report its figures."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from xenlab.results import RunResults

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parents[2]


def run_scenario_cli(pool2, name: str, tmp_path: Path):
    results_path = tmp_path / f"{name}.json"
    proc = subprocess.run([sys.executable, "-m", "xenlab.cli", "run", str(REPO / "scenarios" / f"{name}.yaml"),
                           "--lab", pool2.name, "--results", str(results_path)],
                          env=dict(os.environ), capture_output=True, text=True, timeout=1200, check=False)
    print(proc.stdout[-4000:], proc.stderr[-2000:])
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    [scenario] = RunResults.read(results_path).scenarios
    assert scenario.outcome == "passed"
    return {step.name: step for step in scenario.steps}


def test_power_cut_of_the_source_during_a_migration_leaves_the_guest_running_once_and_intact(pool2, tmp_path):
    steps = run_scenario_cli(pool2, "migration-power-cut", tmp_path)
    migrate = steps["cut h1's power while vm1 migrates to h2"]
    assert migrate.figures["fault_at"].value >= 5.0
    assert migrate.figures["completed"].value in (0.0, 1.0)  # either outcome is a finding; both are reported
    back = steps["vm1 runs on h2 (migrated, or restarted by the pool)"]
    assert back.figures["recovery"].value is not None and back.figures["recovery"].value > 0
    assert steps["vm1 runs once, heard, its disk intact"].figures["integrity"].value == 1.0


def test_storage_loss_while_a_guest_writes_is_survived_and_every_record_verifies(pool2, tmp_path):
    steps = run_scenario_cli(pool2, "storage-loss", tmp_path)
    before = steps["records written before the loss verify"].figures["records"].value
    after = steps["vm1 runs where it ran, and every record verifies"].figures["records"].value
    assert before > 0 and after > before  # the writer went on writing after the outage


def test_partition_of_the_source_during_a_migration_is_healed_and_the_guest_runs_once_intact(pool2, tmp_path):
    steps = run_scenario_cli(pool2, "migration-partition", tmp_path)
    migrate = steps["partition h1 for 10 s while vm1 migrates to h2"]
    assert migrate.figures["fault_at"].value >= 5.0
    assert migrate.figures["completed"].value in (0.0, 1.0)  # either outcome is a finding; both are reported
    assert steps["vm1 runs once, where the migration left it"].outcome == "passed"
    assert steps["vm1 heard again, its disk intact"].figures["integrity"].value == 1.0
