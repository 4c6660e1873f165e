"""Processes owned by a run directory: started, recorded, and always stoppable.

Every process a lab starts has the lab's run directory in its command line (its sockets
and logs live there), which is how `sweep` finds them again after a crash of xenlab,
even when no pid was recorded. A lab tied to its owner (a pytest session) also sets
PR_SET_PDEATHSIG so the kernel kills its processes if the owner dies by SIGKILL.

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


def spawn(argv: Sequence[str], log: Path, tied: bool, stdin_pipe: bool = False) -> subprocess.Popen:
    """Start a lab process with output to `log`, from the launcher thread (see the module's doc).

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

    return _LAUNCHER.run(start)


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


def owned_pids(marker: str) -> list[int]:
    """All live processes whose command line mentions `marker` (a run directory path)."""
    pids = []
    me = os.getpid()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != me:
            line = cmdline(int(entry.name))
            if line and marker in line and not is_zombie(int(entry.name)):
                pids.append(int(entry.name))
    return sorted(pids)


def terminate(pids: list[int], marker: str, grace: float = 5.0) -> list[int]:
    """SIGTERM, then SIGKILL after `grace` seconds, the pids that are still ours."""
    targets = [p for p in pids if alive(p, marker)]
    for pid in targets:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + grace
    remaining = targets
    while remaining and time.monotonic() < deadline:
        remaining = [p for p in remaining if alive(p, marker)]
        if remaining:
            time.sleep(0.05)  # polling process exit: there is no portable wait on non-children
    for pid in remaining:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + 5
    while any(alive(p, marker) for p in remaining) and time.monotonic() < deadline:
        time.sleep(0.05)
    return targets


def sweep(marker: str) -> list[int]:
    """Stop every process that belongs to `marker`, recorded or not."""
    return terminate(owned_pids(marker), marker)
