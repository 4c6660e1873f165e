"""Nightly: PV, PVH and HVM guests on the real TCG lab, through `xenlab run` as a user runs it:
`scenarios/guest-types.yaml` boots one guest of each type in turn, hears it, migrates it
once with its downtime measured and its records verified, then fails the PVH guest over
after a power cut. The hosts run `-cpu qemu64,+svm`, so Xen offers HVM (on shadow paging)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from xenlab.results import RunResults

# Measured here under TCG (labs/xen-pool2-guests.yaml): one guest at a time every type boots,
# is heard and migrates (bench/guests.py, 2026-12-04: heard after 20 / 29 / 141 s, moves
# 99 / 114 / 230 s), so the scenario runs them one after another (13-15 min with the
# bring-up); the three at once failed twice that day (dom0 starved: see the scenario file).
# PV guests run in every other e2e test on every CI run.
pytestmark = [pytest.mark.e2e, pytest.mark.nightly(
    reason="PV, HVM and PVH guests one after another on nested TCG hosts: 13-15 min, passed twice (2026-12-04)"),
    pytest.mark.estimate(14 * 60)]  # for --xenlab-shard while the history has none
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module", autouse=True)
def from_ready():
    """Overrides the e2e session's: this test brings up its own lab and needs no shared
    xen-pool2 booted beside it (the two competing for two cores starved its hosts)."""


@pytest.fixture
def guests_lab(run_base):
    """labs/xen-pool2-guests.yaml (guest_types pv, pvh, hvm: `-cpu qemu64,+svm` under TCG),
    brought up by the scenario run itself and taken down after the test, whatever happens."""
    yield "xen-pool2-guests"
    subprocess.run([sys.executable, "-m", "xenlab.cli", "down", "xen-pool2-guests"], env=dict(os.environ),
                   capture_output=True, timeout=300, check=False)


def test_pv_pvh_and_hvm_guests_boot_migrate_keep_their_data_and_pvh_fails_over(guests_lab, tmp_path):
    results_path = tmp_path / "guest-types.json"
    proc = subprocess.run([sys.executable, "-m", "xenlab.cli", "run", str(REPO / "scenarios/guest-types.yaml"),
                           "--lab", str(REPO / "labs/xen-pool2-guests.yaml"), "--results", str(results_path)],
                          env=dict(os.environ), capture_output=True, text=True, timeout=5400, check=False)
    print(proc.stdout[-6000:], proc.stderr[-2000:])
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    [scenario] = RunResults.read(results_path).scenarios
    assert scenario.outcome == "passed"
    steps = {step.name: step for step in scenario.steps}
    for vm, guest_type in (("vm-pv", "pv"), ("vm-pvh", "pvh"), ("vm-hvm", "hvm")):
        created = next(s for s in scenario.steps if s.kind == "create_vm" and s.details["vm"]["name"] == vm)
        assert created.figures["first_heartbeat"].value > 0, guest_type
        moved = steps[f"migrate {vm} -> h2"]
        assert moved.figures["downtime"].value is not None and moved.figures["downtime"].value > 0, guest_type
        assert moved.figures["integrity"].value == 1.0, guest_type
        assert steps[f"{vm} on h2, heard, its disk intact"].figures["integrity"].value == 1.0
    failover = steps["the pool restarts vm-pvh on h1"].figures
    assert failover["recovery"].value > failover["detection"].value > 0
    assert steps["vm-pvh heard and intact after failover"].figures["integrity"].value == 1.0
    # the hosts really ran the guests as their types: a PV or PVH guest's kernel says what it
    # runs as (/sys/hypervisor/guest_type) on its PV console, which h1's xenconsoled kept; an
    # HVM guest speaks on its emulated UART (not logged by xenconsoled), but only it had a
    # device model in h1's dom0, whose log xl keeps
    from xenlab.lab.labs import running_lab

    lab = running_lab(guests_lab)
    assert lab.state.cpu in ("qemu64,+svm", "host")
    h1 = lab.machines["h1"]
    for vm, kind in (("vm-pv", "PV"), ("vm-pvh", "PVH")):
        console = h1.succeed(f"cat /var/log/xen/console/guest-{vm}.log")
        assert re.search(rf"xenlab-guest: {vm} up, [0-9./]+, {kind} guest", console), console[-2000:]
    device_models = h1.succeed("ls /var/log/xen/").split()
    assert "qemu-dm-vm-hvm.log" in device_models, device_models
    assert not {"qemu-dm-vm-pv.log", "qemu-dm-vm-pvh.log"} & set(device_models), device_models
