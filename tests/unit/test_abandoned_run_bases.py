"""Run bases claimed by an owner process (a test session): what a dead owner left is found and stopped."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from xenlab.lab import labs, rundir
from xenlab.lab.processes import alive
from xenlab.waiting import wait_for

OWNER = textwrap.dedent("""
    import subprocess, sys
    from pathlib import Path
    from xenlab.lab import rundir
    rundir.default_runs_base = lambda: Path(sys.argv[1])
    base = Path(sys.argv[2])
    rundir.claim_run_base(base)
    # a machine started untied (as a CLI command does)
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)", str(base / "lab" / "qemu")],
                             start_new_session=True)
    from xenlab.lab.processes import record
    record(base / "lab", child.pid)  # recorded in its lab's run directory, as spawn does
    print(child.pid, flush=True)
    if sys.argv[3] == "stay":
        sys.stdin.read()
""")


@pytest.fixture
def default_base(tmp_path, monkeypatch):
    base = tmp_path / "default"
    monkeypatch.setattr(rundir, "default_runs_base", lambda: base)
    return base


def start_owner(default_base, base, how: str) -> tuple[subprocess.Popen, int]:
    owner = subprocess.Popen([sys.executable, "-c", OWNER, str(default_base), str(base), how],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    return owner, int(owner.stdout.readline())


def test_a_dead_owners_run_base_is_swept_and_forgotten(default_base, tmp_path):
    base = tmp_path / "pytest-7" / "xenlab-run0"
    owner, machine = start_owner(default_base, base, "exit")
    owner.wait(timeout=30)
    assert alive(machine, str(base))  # the owner died; its machine did not
    assert rundir.abandoned_run_bases() == [base.resolve()]
    assert labs.sweep_abandoned_run_bases() == {str(base.resolve()): 1}
    wait_for(lambda: not alive(machine, str(base)), "the abandoned machine to stop", timeout=10)
    assert rundir.abandoned_run_bases() == []  # forgotten once swept
    assert base.exists()  # its files are the owner's


def test_a_living_owners_run_base_is_left_alone(default_base, tmp_path):
    base = tmp_path / "pytest-8" / "xenlab-run0"
    owner, machine = start_owner(default_base, base, "stay")
    try:
        assert rundir.abandoned_run_bases() == []
        assert labs.sweep_abandoned_run_bases() == {}
        assert alive(machine, str(base))
    finally:
        owner.stdin.close()
        owner.wait(timeout=30)
        labs.sweep_abandoned_run_bases()
    assert not alive(machine, str(base))


def test_a_pid_reused_by_another_process_is_not_the_owner(default_base, tmp_path):
    base = tmp_path / "pytest-9" / "xenlab-run0"
    rundir.claim_run_base(base)  # this process owns it...
    assert rundir.abandoned_run_bases() == []
    (base / rundir.OWNER_FILE).write_text(json.dumps({"pid": os.getpid(), "started": 1}))
    assert rundir.abandoned_run_bases() == [base.resolve()]  # ...but not one that started at tick 1


def test_a_removed_run_base_drops_out_of_the_listing(default_base, tmp_path):
    base = tmp_path / "gone"
    rundir.claim_run_base(base)
    (base / rundir.OWNER_FILE).unlink()
    base.rmdir()
    assert rundir.abandoned_run_bases() == []
    assert list((default_base / rundir.ELSEWHERE).iterdir()) == []
