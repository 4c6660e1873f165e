"""Processes owned by a run directory: started, recorded, and always stoppable.

Every process a lab starts has the lab's run directory in its command line (its sockets
and logs live there), which is how `sweep` finds them again after a crash of xenlab,
even when no pid was recorded. A lab tied to its owner (a pytest session) also sets
PR_SET_PDEATHSIG so the kernel kills its processes if the owner dies by SIGKILL.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def spawn(argv: Sequence[str], log: Path, tied: bool, stdin_pipe: bool = False) -> subprocess.Popen:
    """Start a lab process with output to `log`.

    tied: dies with this process (PDEATHSIG), for labs owned by a test session. The kernel
    sends the signal when the *thread* that started it ends: start tied processes from the
    thread that owns the lab, never from a pool thread.
    Otherwise it gets its own session so it outlives the CLI command that started it.
    """
    with open(log, "ab") as out:
        return subprocess.Popen(
            list(argv),
            stdin=subprocess.PIPE if stdin_pipe else subprocess.DEVNULL,
            stdout=out, stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent if tied else None,  # noqa: PLW1509 - one prctl call, no locks taken
            start_new_session=not tied,
            close_fds=True,
        )


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
