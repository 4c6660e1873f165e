"""Lab processes: tied ones die with their owner, and sweep finds untracked ones."""

import os
import signal
import subprocess
import sys
import textwrap

import pytest

from xenlab.lab.network import start_switch
from xenlab.lab.processes import alive, owned_pids, spawn, sweep
from xenlab.waiting import wait_for

# A long-running process whose command line carries a marker argument (as lab processes do).
SLEEPER = [sys.executable, "-c", "import time; time.sleep(300)"]


def test_sweep_stops_every_process_that_mentions_the_run_dir(tmp_path):
    marker = str(tmp_path) + "/"
    procs = [subprocess.Popen(SLEEPER + [f"{tmp_path}/x{i}"], start_new_session=True) for i in range(2)]
    other = subprocess.Popen(["sleep", "300"])
    try:
        # Popen returns before exec; wait until both run `sleep` with the marker in argv
        wait_for(lambda: sorted(owned_pids(marker)) == sorted(p.pid for p in procs), "sleeps to start", 5, 0.02)
        stopped = sweep(marker)
        assert sorted(stopped) == sorted(p.pid for p in procs)
        for p in procs:
            assert p.wait(timeout=5) == -signal.SIGTERM
        assert other.poll() is None
        assert owned_pids(marker) == []
    finally:
        other.kill()
        other.wait()


def test_alive_refuses_a_recycled_pid(tmp_path):
    proc = subprocess.Popen(["sleep", "300"])
    try:
        assert not alive(proc.pid, str(tmp_path))  # running, but not ours
        assert not alive(None, str(tmp_path))
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.skipif(not os.path.exists("/usr/bin/vde_switch"), reason="vde2 not installed (./setup.sh)")
def test_persistent_switch_survives_its_starter_and_is_swept(tmp_path):
    sock = tmp_path / "lab.vde"
    pid, handle = start_switch(sock, tmp_path / "sw.log", tied=False)
    assert handle is None and alive(pid, str(tmp_path) + "/")
    assert (sock / "ctl").exists() and oct(sock.stat().st_mode & 0o777) == "0o700"
    assert sweep(str(tmp_path) + "/") == [pid]
    assert not alive(pid, str(tmp_path) + "/")


@pytest.mark.skipif(not os.path.exists("/usr/bin/vde_switch"), reason="vde2 not installed (./setup.sh)")
def test_tied_processes_die_when_their_owner_is_killed(tmp_path):
    """An owner (think: a pytest session) starts a switch and a long process, then is SIGKILLed."""
    owner_code = textwrap.dedent(f"""
        import sys, time
        from pathlib import Path
        from xenlab.lab.network import start_switch
        from xenlab.lab.processes import spawn
        tmp = Path({str(tmp_path)!r})
        start_switch(tmp / "lab.vde", tmp / "sw.log", tied=True)
        spawn({SLEEPER!r} + [str(tmp / "marker")], tmp / "sleep.log", tied=True)
        print("ready", flush=True)
        time.sleep(300)
    """)
    owner = subprocess.Popen([sys.executable, "-c", owner_code], stdout=subprocess.PIPE, text=True)
    assert owner.stdout.readline().strip() == "ready"
    marker = str(tmp_path) + "/"
    wait_for(lambda: len(owned_pids(marker)) == 2, "the owner's switch and sleep to start", 5, 0.02)
    owner.send_signal(signal.SIGKILL)
    owner.wait()
    wait_for(lambda: owned_pids(marker) == [], "tied processes to die with their owner", 10, 0.05)


def test_spawn_untied_gets_its_own_session(tmp_path):
    proc = spawn(SLEEPER + [str(tmp_path)], tmp_path / "log", tied=False)
    try:
        assert os.getsid(proc.pid) == proc.pid
    finally:
        proc.kill()
        proc.wait()
