"""Lab networks: one vde_switch per network, on a unix socket in the run directory.

Nothing here touches the machine's own network: vde switches are user-space hubs
reached only through their socket directories.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from ..errors import XenlabError
from ..waiting import wait_for
from .processes import record, spawn


def _start_vde_tool(argv: list[str], ready: Path, pidfile: Path, log: Path, tied: bool,
                    label: str, record_in: Path) -> tuple[int, subprocess.Popen | None]:
    """Start a vde2 tool (vde_switch, wirefilter); return (pid, handle-to-keep).

    tied: it runs in the foreground reading a pipe from us; when we die the pipe closes
    and the tool exits by itself (plus PDEATHSIG). Otherwise it daemonizes with a pid file.
    Either way it is recorded in `record_in` (the run directory) for the sweep: the daemon by
    the pid in its pid file.
    """
    if not shutil.which(argv[0]):
        raise XenlabError(f"{argv[0]} is not installed (Debian package vde2); run `xenlab doctor`")
    if tied:
        proc = spawn(argv, log, tied=True, stdin_pipe=True, record_in=record_in)
        pid, handle = proc.pid, proc
    else:
        proc = spawn(argv + ["--daemon", "--pidfile", str(pidfile)], log, tied=False, record_in=record_in)
        if proc.wait(timeout=10) != 0:
            raise XenlabError(f"{label} failed to start; see {log}")
        pid = int(wait_for(lambda: pidfile.exists() and pidfile.read_text().strip(), f"pid file of {label}", 10, 0.05))
        record(record_in, pid)
        handle = None
    wait_for(ready.exists, f"{label}: socket {ready}", 10, 0.05,
             evidence=lambda: log.read_text(errors="replace")[-500:] if log.exists() else "")
    return pid, handle


def start_switch(socket_dir: Path, log: Path, tied: bool, *, record_in: Path) -> tuple[int, subprocess.Popen | None]:
    """A vde_switch hub on a unix socket directory (private to the run directory)."""
    argv = ["vde_switch", "--hub", "--sock", str(socket_dir), "--dirmode", "0700", "--mode", "0600"]
    return _start_vde_tool(argv, socket_dir / "ctl", socket_dir.with_name(socket_dir.name + ".pid"), log, tied,
                           f"vde_switch {socket_dir.name}", record_in)


def start_wirefilter(access: Path, core: Path, mgmt: Path, log: Path, tied: bool,
                     *, record_in: Path) -> tuple[int, subprocess.Popen | None]:
    """Join a machine's access switch to the network's core switch through a wirefilter.

    The filter starts transparent; `WireFilter` later sets loss, delay and bandwidth on it
    (a partition is 100% loss: packets vanish but the machine's carrier stays up).
    """
    argv = ["wirefilter", "-v", f"{access}:{core}", "-M", str(mgmt), "--mgmtmode", "0600"]
    return _start_vde_tool(argv, mgmt, mgmt.with_name(mgmt.name + ".pid"), log, tied, f"wirefilter {mgmt.name}",
                           record_in)


class WireFilter:
    """The management console of one wirefilter (one machine's link into one network)."""

    def __init__(self, mgmt: Path, label: str):
        self.mgmt = mgmt
        self.label = label

    def command(self, line: str, timeout: float = 5.0) -> str:
        """Send one console command; return its output; raise unless it answers 1000 Success."""
        import socket
        import time

        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            try:
                s.connect(str(self.mgmt))
            except OSError as exc:
                raise XenlabError(f"{self.label}: wirefilter console {self.mgmt} unreachable: {exc}") from None
            self._read_until_prompt(s, time.monotonic() + timeout)  # banner
            s.sendall(line.encode() + b"\n")
            reply = self._read_until_prompt(s, time.monotonic() + timeout)
        if "1000 Success" not in reply:
            raise XenlabError(f"{self.label}: wirefilter refused {line!r}: {reply.strip()}")
        return reply

    @staticmethod
    def _read_until_prompt(s, deadline: float) -> str:
        import time

        data = b""
        while not data.endswith(b"VDEwf$ "):
            if time.monotonic() > deadline:
                raise XenlabError(f"wirefilter console did not answer (got {data[-200:]!r})")
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
        return data.decode(errors="replace")

    def set(self, loss_pct: float = 0, delay_ms: float = 0, bandwidth_kbit: float = 0) -> None:
        """Both directions; zeros mean a clean wire. Bandwidth 0 = unlimited."""
        self.command(f"loss {loss_pct:g}")
        self.command(f"delay {delay_ms:g}")
        self.command(f"bandwidth {int(bandwidth_kbit * 1000 / 8)}")  # wirefilter counts bytes/s

    def clear(self) -> None:
        self.set(0, 0, 0)

    def settings(self) -> dict[str, str]:
        text = self.command("showinfo")
        out = {}
        for line in text.splitlines():
            parts = line.split()
            if len(parts) >= 3 and parts[0] in ("Loss", "Delay", "Bandw"):
                out[parts[0].lower()] = parts[2]  # L->R value, e.g. "100+0U"
        return out
