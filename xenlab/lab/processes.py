"""Processes owned by a run directory: started, recorded, and always stoppable.

Every process a lab starts is recorded in its run directory (`procs/PID-START`, START
being the process's start time in clock ticks, /proc/PID/stat field 22), the moment it
is started, by `spawn` itself. `sweep` stops exactly those: a record whose pid now
belongs to another process (its start time differs) is dropped, never killed, and a
process that merely mentions the run directory (a user's `tail -f .../serial.log`) is not
xenlab's. A lab tied to its owner (a pytest session) also sets PR_SET_PDEATHSIG so the
kernel kills its processes if the owner dies by SIGKILL.

Linux sends that signal when the *thread* that forked the child ends (prctl(2)), not the
process: a machine healed from a worker thread (a fault struck into a migration) would die
with that thread. So every lab process is forked by one launcher thread that lives as long
as this process (`_Launcher`), whichever thread asks: tied processes die with the process,
never with the thread that wanted them. (Dropping PDEATHSIG for a watchdog would leave a
SIGKILLed owner's machines running until some later sweep; the launcher keeps the kernel's
guarantee.)
"""

from __future__ import annotations

import ctypes
import os
import queue
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from pathlib import Path

PR_SET_PDEATHSIG = 1


def _die_with_parent(parent: int) -> Callable[[], None]:
    def tie() -> None:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:  # the owner died between fork and prctl: the signal will never come
            os.kill(os.getpid(), signal.SIGKILL)

    return tie


class _Launcher:
    """The one thread that forks lab processes: it lives until this process exits (a daemon
    thread waiting on its queue), so a child's parent-death signal means the process died."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._jobs: queue.SimpleQueue[tuple[Callable[[], subprocess.Popen], Future]] | None = None
        os.register_at_fork(after_in_child=self._forget)  # a forked child has no launcher thread

    def _forget(self) -> None:
        self._lock = threading.Lock()
        self._jobs = None

    def _serve(self, jobs: queue.SimpleQueue) -> None:
        while True:
            start, done = jobs.get()
            if done.set_running_or_notify_cancel():
                try:
                    done.set_result(start())
                except BaseException as exc:  # noqa: BLE001 - handed to the caller, who raises it
                    done.set_exception(exc)

    def run(self, start: Callable[[], subprocess.Popen]) -> subprocess.Popen:
        with self._lock:
            if self._jobs is None:
                self._jobs = queue.SimpleQueue()
                threading.Thread(target=self._serve, args=(self._jobs,), name="xenlab launcher", daemon=True).start()
            jobs = self._jobs
        done: Future = Future()
        jobs.put((start, done))
        return done.result()


_LAUNCHER = _Launcher()


def spawn(argv: Sequence[str], log: Path, tied: bool, *, record_in: Path, stdin_pipe: bool = False) -> subprocess.Popen:
    """Start a lab process with output to `log`, from the launcher thread (see the module's
    doc), recorded in run directory `record_in` for `sweep`.

    tied: dies with this process (PDEATHSIG), for labs owned by a test session; any thread
    may start it. Otherwise it gets its own session so it outlives the CLI command that started it.
    """

    def start() -> subprocess.Popen:
        with open(log, "ab") as out:
            return subprocess.Popen(
                list(argv),
                stdin=subprocess.PIPE if stdin_pipe else subprocess.DEVNULL,
                stdout=out, stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent(os.getpid()) if tied else None,  # noqa: PLW1509 - one prctl call, no locks taken
                start_new_session=not tied,
                close_fds=True,
            )

    proc = _LAUNCHER.run(start)
    record(record_in, proc.pid)
    return proc


# -- what xenlab started, by pid and start time ----------------------------------------------
PROCESSES_DIR = "procs"


def record(run_root: Path | str, pid: int) -> None:
    """Note in `run_root` that xenlab started `pid` (as the process that has it now)."""
    started = process_start(pid)
    if started is None:
        return  # gone already: nothing to stop later
    directory = Path(run_root) / PROCESSES_DIR
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    (directory / f"{pid}-{started}").touch(mode=0o600)


def recorded(path: Path | str) -> list[tuple[int, int, Path]]:
    """(pid, start time, record) of every process recorded in run directory `path`, or in
    the run directories right under it (a run base: every lab of it)."""
    root = Path(path)
    found = []
    for entry in [*root.glob(f"{PROCESSES_DIR}/*"), *root.glob(f"*/{PROCESSES_DIR}/*")]:
        pid, _, started = entry.name.partition("-")
        if pid.isdigit() and started.isdigit():
            found.append((int(pid), int(started), entry))
    return sorted(found)


def ours(pid: int, started: int) -> bool:
    """Is the process with `pid` still the one that started at `started` (and not a zombie)?"""
    return process_start(pid) == started and not is_zombie(pid)


def owned_pids(path: Path | str) -> list[int]:
    """The live processes recorded in `path` (see `recorded`)."""
    return sorted({pid for pid, started, _ in recorded(path) if ours(pid, started)})


def cmdline(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None


def process_start(pid: int) -> int | None:
    """When `pid` started (clock ticks since boot), to tell it from a later process with its pid."""
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (FileNotFoundError, ProcessLookupError, IndexError):  # ESRCH: it exited while being read
        return True


def alive(pid: int | None, marker: str) -> bool:
    """Is `pid` running and still ours (its command line mentions `marker`)?"""
    if not pid:
        return False
    line = cmdline(pid)
    return line is not None and marker in line and not is_zombie(pid)


def terminate(targets: list[tuple[int, int]], grace: float = 5.0) -> list[int]:
    """SIGTERM, then SIGKILL after `grace` seconds, the (pid, start time) still running as such."""
    targets = [(pid, started) for pid, started in targets if ours(pid, started)]
    for pid, _ in targets:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + grace
    remaining = targets
    while remaining and time.monotonic() < deadline:
        remaining = [t for t in remaining if ours(*t)]
        if remaining:
            time.sleep(0.05)  # polling process exit: there is no portable wait on non-children
    for pid, started in remaining:
        if ours(pid, started):  # checked again just before: its pid may have been reused meanwhile
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    deadline = time.monotonic() + 5
    while any(ours(*t) for t in remaining) and time.monotonic() < deadline:
        time.sleep(0.05)
    return [pid for pid, _ in targets]


def sweep(path: Path | str) -> list[int]:
    """Stop every process recorded in run directory `path` (or the run directories under it)
    that still is the process recorded; drop every record. Nothing else is touched."""
    records = recorded(path)
    stopped = terminate(sorted({(pid, started) for pid, started, _ in records}))
    for _, _, entry in records:
        entry.unlink(missing_ok=True)
    return stopped
