"""Failure artifacts from a real Lab object over a run directory made of real files."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from xenlab.fixtures.artifacts import artifact_dir_name, collect_failure_artifacts
from xenlab.lab import Lab
from xenlab.lab.rundir import LabState, MachineState, RunDir
from xenlab.lab.ssh import CommandResult
from xenlab.spec import parse_lab


@pytest.fixture
def fake_run(tmp_path):
    """A lab's run directory as `up` leaves it: state, serial logs, QMP event logs.

    h1 'runs' (a live process whose command line names the run directory, as QEMU's
    does), h2 is powered off, services runs; nobody answers SSH or QMP."""
    spec = parse_lab("name: art\nhosts:\n  h1:\n  h2:\n")
    run = RunDir(tmp_path / "art")
    run.create()
    lab = Lab(spec, "labs/art.yaml", run)
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", run.marker])
    state = LabState(lab="art", spec_path="", spec={}, accel="tcg", cpu="qemu64", accel_reason="test",
                     created_at=time.time(), tied_to_pid=None)
    for name in lab.machines:
        powered = name != "h2"
        state.machines[name] = MachineState(ssh_port=1, image_dir=str(tmp_path), pid=sleeper.pid if powered else None,
                                            powered=powered)
        lines = "\n".join(f"{name} console line {i}" for i in range(500))
        (lab.host(name).dir / "serial.log").write_text(f"Xen version 4.17\r\n{lines}\n")
        (lab.host(name).dir / "qmp-events.jsonl").write_text(json.dumps({"event": "RESET", "host": name}) + "\n")
    run.write_state(state)
    yield lab
    sleeper.kill()
    sleeper.wait()


def test_artifacts_of_every_machine_tolerate_unreachable_and_off_hosts(fake_run, tmp_path):
    dest = tmp_path / "report" / "artifacts" / artifact_dir_name("tests/test_pool.py::test_join[xen-pool2]")
    index = collect_failure_artifacts(fake_run.machines.values(), dest, ssh_timeout=3)
    assert dest.name == "tests_test_pool.py_test_join_xen-pool2"
    h1 = (dest / "h1" / "serial-tail.log").read_text().splitlines()
    assert h1[-1] == "h1 console line 499" and len(h1) == 300
    assert '"RESET"' in (dest / "h2" / "qmp-events.jsonl").read_text()
    # h1 runs but answers neither QMP nor SSH: the attempt is recorded, not raised
    assert (dest / "h1" / "xl-dmesg.txt").read_text().startswith("(unreachable:")
    # h2 is off: not asked at all
    assert (dest / "h2" / "journal.txt").read_text() == "(not asked: h2 is off)\n"
    assert not (dest / "services" / "xl-dmesg.txt").exists()
    assert any(p.startswith("h2: xl dmesg: not asked") for p in index.problems)
    listed = (dest / "index.txt").read_text()
    assert "h1/serial-tail.log" in listed and "problem: h1: xl dmesg:" in listed


def test_artifacts_hold_what_a_reachable_host_says(fake_run, tmp_path, monkeypatch):
    asked = []

    def run(self, command, timeout=60):
        asked.append((self.name, command, timeout))
        return CommandResult(self.name, command, 0 if command == "xl dmesg" else 1, f"{self.name}: {command}\n",
                             "journal is empty", 0.01)

    monkeypatch.setattr(type(fake_run.host("h1")), "run", run)
    dest = tmp_path / "a"
    collect_failure_artifacts([fake_run.host("h1")], dest, ssh_timeout=7)
    assert (dest / "h1" / "xl-dmesg.txt").read_text() == "h1: xl dmesg\n"
    journal = (dest / "h1" / "journal.txt").read_text()
    assert "(exit status 1)" in journal and "journal is empty" in journal
    assert [(name, command.split()[0], timeout) for name, command, timeout in asked] == [
        ("h1", "xl", 7), ("h1", "for", 7), ("h1", "journalctl", 7)]
    assert "/var/log/xen/console/guest-*.log" in asked[1][1]  # the guests' consoles, as xenconsoled logs them
    assert (dest / "h1" / "guest-consoles.txt").exists()


def test_long_test_ids_stay_distinct_and_bounded():
    a = artifact_dir_name("tests/x.py::test_" + "a" * 200 + "[1]")
    b = artifact_dir_name("tests/x.py::test_" + "a" * 200 + "[2]")
    assert a != b and len(a) <= 120 and len(b) <= 120
