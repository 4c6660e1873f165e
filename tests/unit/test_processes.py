"""Lab processes: tied ones die with their owner, and sweep finds untracked ones."""

import os
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from xenlab.lab.network import start_switch
from xenlab.lab.processes import (
    PROCESSES_DIR,
    alive,
    cmdline,
    owned_pids,
    process_start,
    record,
    recorded,
    spawn,
    sweep,
)
from xenlab.waiting import wait_for

# A long-running process whose command line carries a marker argument (as lab processes do).
SLEEPER = [sys.executable, "-c", "import time; time.sleep(300)"]


def test_sweep_stops_what_xenlab_started_and_nothing_else(tmp_path):
    """Recorded processes die; a user's `tail -f` on a file in the run directory survives,
    and so does a process that now has the pid of a recorded one (another start time)."""
    marker = str(tmp_path) + "/"
    serial = tmp_path / "machines" / "h1" / "serial.log"
    serial.parent.mkdir(parents=True)
    serial.write_text("boot\n")
    procs = [spawn(SLEEPER + [f"{tmp_path}/x{i}"], tmp_path / "log", tied=False, record_in=tmp_path) for i in range(2)]
    users_tail = subprocess.Popen(["tail", "-f", str(serial)], stdout=subprocess.DEVNULL)
    stranger = subprocess.Popen(["sleep", "300"])
    started = process_start(stranger.pid)
    (tmp_path / PROCESSES_DIR / f"{stranger.pid}-{started - 1}").touch()  # its pid, recorded for an earlier process
    try:
        # the old sweep killed whatever mentioned the run directory: the tail does
        wait_for(lambda: marker in (cmdline(users_tail.pid) or ""), "the user's tail to run", 5, 0.02)
        assert owned_pids(tmp_path) == sorted(p.pid for p in procs)
        stopped = sweep(tmp_path)
        assert sorted(stopped) == sorted(p.pid for p in procs)
        for p in procs:
            assert p.wait(timeout=5) == -signal.SIGTERM
        assert users_tail.poll() is None and stranger.poll() is None
        assert owned_pids(tmp_path) == [] and list((tmp_path / PROCESSES_DIR).iterdir()) == []
    finally:
        for other in (users_tail, stranger):
            other.kill()
            other.wait()


def test_a_record_is_the_process_that_had_the_pid_then(tmp_path):
    proc = subprocess.Popen(["sleep", "300"])
    try:
        record(tmp_path, proc.pid)
        assert recorded(tmp_path)[0][:2] == (proc.pid, process_start(proc.pid))
        assert owned_pids(tmp_path) == [proc.pid]
        assert owned_pids(tmp_path.parent) == [proc.pid]  # a run base sees its labs' records
    finally:
        proc.kill()
        proc.wait()
    assert owned_pids(tmp_path) == []


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
    pid, handle = start_switch(sock, tmp_path / "sw.log", tied=False, record_in=tmp_path)
    assert handle is None and alive(pid, str(tmp_path) + "/")
    assert (sock / "ctl").exists() and oct(sock.stat().st_mode & 0o777) == "0o700"
    assert sweep(tmp_path) == [pid]
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
        start_switch(tmp / "lab.vde", tmp / "sw.log", tied=True, record_in=tmp)
        spawn({SLEEPER!r} + [str(tmp / "marker")], tmp / "sleep.log", tied=True, record_in=tmp)
        print("ready", flush=True)
        time.sleep(300)
    """)
    owner = subprocess.Popen([sys.executable, "-c", owner_code], stdout=subprocess.PIPE, text=True)
    assert owner.stdout.readline().strip() == "ready"
    wait_for(lambda: len(owned_pids(tmp_path)) == 2, "the owner's switch and sleep to start", 5, 0.02)
    owner.send_signal(signal.SIGKILL)
    owner.wait()
    wait_for(lambda: owned_pids(tmp_path) == [], "tied processes to die with their owner", 10, 0.05)


def test_spawn_untied_gets_its_own_session(tmp_path):
    proc = spawn(SLEEPER + [str(tmp_path)], tmp_path / "log", tied=False, record_in=tmp_path)
    try:
        assert os.getsid(proc.pid) == proc.pid
    finally:
        proc.kill()
        proc.wait()


def _doomed(pid: int) -> bool:
    """`pid` is dead, dying, or has a SIGKILL waiting for it (the kernel queues a parent-death
    signal while the exiting thread is still being torn down, before its /proc entry goes)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return True
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    pending = int(fields["SigPnd"], 16) | int(fields["ShdPnd"], 16)
    return fields["State"].split()[0] in ("Z", "X") or bool(pending & (1 << (signal.SIGKILL - 1)))


def _thread_gone(native_id: int) -> bool:
    return not Path(f"/proc/self/task/{native_id}").exists()


def test_a_tied_process_started_from_a_short_lived_thread_outlives_the_thread(tmp_path):
    """A healed host is launched from a worker thread (scenario/struck.py): it must stay tied
    to the process, not to that thread (PR_SET_PDEATHSIG fires when the *forking thread* ends).
    Deterministic: once the thread's /proc task entry is gone, any parent-death signal has been
    queued, so the child is checked for a pending SIGKILL as well as for being alive."""
    started: list = []

    def worker() -> None:
        started.append(spawn(SLEEPER + [str(tmp_path / "marker")], tmp_path / "log", tied=True, record_in=tmp_path))
        started.append(threading.get_native_id())

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join()
    proc, native_id = started
    try:
        wait_for(lambda: _thread_gone(native_id), "the worker thread to leave the kernel", 10, 0.01)
        assert proc.poll() is None and not _doomed(proc.pid)
    finally:
        proc.kill()
        proc.wait()


def test_a_tied_process_started_from_a_thread_dies_with_its_owning_process(tmp_path):
    owner_code = textwrap.dedent(f"""
        import sys, threading
        from pathlib import Path
        from xenlab.lab.processes import spawn
        tmp = Path({str(tmp_path)!r})
        out = []
        t = threading.Thread(target=lambda: out.append(spawn({SLEEPER!r} + [str(tmp / "marker")],
                                                             tmp / "log", tied=True, record_in=tmp)))
        t.start(); t.join()
        print(out[0].pid, flush=True)
        sys.stdin.read()  # until the test closes our stdin: then this process exits normally
    """)
    owner = subprocess.Popen([sys.executable, "-c", owner_code], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             text=True)
    child = int(owner.stdout.readline())
    assert owned_pids(tmp_path) == [child]
    owner.stdin.close()
    assert owner.wait(timeout=30) == 0
    wait_for(lambda: owned_pids(tmp_path) == [], "the tied process to die with its owning process", 10, 0.05)
