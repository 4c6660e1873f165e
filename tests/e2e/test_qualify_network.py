"""The qualification's network phase on the shared lab, on every CI run (the whole quick suite
is nightly): iperf3 dom0 to dom0, and TCP from a guest on one host to a guest on the other,
counted by the receiving guest's own agent and read back from its host's console log."""

from __future__ import annotations

from pathlib import Path

import pytest

from xenlab.drivers import drivers_for
from xenlab.qualify import plan_qualify, run_qualify

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parents[2]
NETWORK_ONLY = """name: network-only
description: the network phase alone (tests/e2e/test_qualify_network.py)
suite:
  inventory: {enabled: false}
  boot: {enabled: false}
  network:
    seconds: 2
    ping_count: 5
    guest_seconds: 3
    thresholds: {throughput: "> 0.1 Mbit/s", guest_throughput: "> 0.1 Mbit/s"}  # a path that moves data at all
  storage: {enabled: false}
  lifecycle: {enabled: false}
  stability: {enabled: false}
"""


def test_guest_to_guest_throughput_is_measured_by_the_guests(pool2, tmp_path):
    profile = tmp_path / "network-only.yaml"
    profile.write_text(NETWORK_ONLY)
    report = run_qualify(plan_qualify(str(profile), str(REPO / "labs/xen-pool2.yaml"), tmp_path / "q"))
    by_id = {c.id: c for c in report.checks}
    guests = by_id["network/guest-to-guest"]
    assert guests.verdict == "passed", guests.reason
    [figure] = [f for f in guests.figures if f.name == "guest_throughput"]
    print(f"guest to guest: {figure.value} Mbit/s ({guests.details['bytes']} bytes in {guests.details['seconds']} s); "
          + ", ".join(f"{c.id}: {f.value} {f.unit}" for c in report.checks for f in c.figures if f.name == "throughput"))
    assert figure.value > 0 and guests.details["bytes"] > 0
    # the receiver counted from the first byte to the sender's close (how long is bench/ work)
    assert guests.details["seconds"] > 0, guests.details
    assert by_id["network/h1-h2/lab"].verdict == "passed", by_id["network/h1-h2/lab"].reason
    assert drivers_for(pool2).toolstack.vms() == []  # both guests are gone again
