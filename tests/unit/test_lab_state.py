"""A lab object follows its state file when another xenlab command rewrites it.

A `xenlab run` beside a test session restores `ready` in new QEMU processes and records
their pids; the session's own Lab object must see those machines as running, not off."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from xenlab.lab import Lab
from xenlab.lab.rundir import LabState, MachineState, RunDir
from xenlab.spec import parse_lab


def _state(tmp_path, pids: dict[str, int | None]) -> LabState:
    state = LabState(lab="follow", spec_path="", spec={}, accel="tcg", cpu="qemu64", accel_reason="test",
                     created_at=time.time(), tied_to_pid=None)
    for name, pid in pids.items():
        state.machines[name] = MachineState(ssh_port=1, image_dir=str(tmp_path), pid=pid, powered=pid is not None)
    return state


@pytest.fixture
def sleepers(tmp_path):
    run = RunDir(tmp_path / "follow")
    run.create()
    started = [subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", run.marker]) for _ in range(2)]
    yield run, started
    for proc in started:
        proc.kill()
        proc.wait()


def test_a_restart_recorded_by_another_command_is_followed(tmp_path, sleepers):
    run, (first, second) = sleepers
    lab = Lab(parse_lab("name: follow\nhosts:\n  h1:\n"), "labs/follow.yaml", run)
    run.write_state(_state(tmp_path, {"h1": first.pid, "services": first.pid}))
    assert lab.host("h1").process_alive()
    first.kill()
    first.wait()
    assert not lab.host("h1").process_alive()
    # another command (its own RunDir, its own process in real life) restarted h1
    RunDir(run.root).write_state(_state(tmp_path, {"h1": second.pid, "services": None}))
    assert lab.state.machines["h1"].pid == second.pid
    assert lab.host("h1").process_alive()
    assert not lab.host("services").process_alive()


def test_own_writes_are_kept_and_not_re_read(tmp_path, sleepers):
    run, (first, _) = sleepers
    lab = Lab(parse_lab("name: follow\nhosts:\n  h1:\n"), "labs/follow.yaml", run)
    run.write_state(_state(tmp_path, {"h1": first.pid, "services": first.pid}))
    state = lab.state
    state.ready_at = 42.0
    lab.save_state()
    assert lab.state is state  # nothing changed on disk since our own write
    assert RunDir(run.root).read_state().ready_at == 42.0


def test_state_stamp_changes_with_every_write(tmp_path):
    run = RunDir(tmp_path / "stamps")
    run.create()
    assert run.state_stamp() is None
    first = run.write_state(_state(tmp_path, {"h1": None}))
    assert run.state_stamp() == first
    second = run.write_state(_state(tmp_path, {"h1": None}))
    assert second != first and run.state_stamp() == second
