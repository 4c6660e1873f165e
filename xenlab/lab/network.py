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
from .processes import spawn


def start_switch(socket_dir: Path, log: Path, tied: bool) -> tuple[int, subprocess.Popen | None]:
    """Start a vde_switch hub and return (pid, handle-to-keep).

    tied: the switch runs in the foreground reading a pipe from us; when we die, the
    pipe closes and vde_switch exits by itself (plus PDEATHSIG). Otherwise it daemonizes.
    """
    if not shutil.which("vde_switch"):
        raise XenlabError("vde_switch is not installed (Debian package vde2); run `xenlab doctor`")
    argv = ["vde_switch", "--hub", "--sock", str(socket_dir), "--dirmode", "0700", "--mode", "0600"]
    if tied:
        proc = spawn(argv, log, tied=True, stdin_pipe=True)
        pid = proc.pid
        handle: subprocess.Popen | None = proc
    else:
        pidfile = socket_dir.with_name(socket_dir.name + ".pid")
        proc = spawn(argv + ["--daemon", "--pidfile", str(pidfile)], log, tied=False)
        if proc.wait(timeout=10) != 0:
            raise XenlabError(f"vde_switch for {socket_dir.name} failed to start; see {log}")
        pid = int(wait_for(lambda: pidfile.exists() and pidfile.read_text().strip(), f"pid file of {socket_dir.name}", 10, 0.05))
        handle = None
    wait_for(lambda: (socket_dir / "ctl").exists(), f"vde switch socket {socket_dir}/ctl", 10, 0.05,
             evidence=lambda: log.read_text(errors="replace")[-500:] if log.exists() else "")
    return pid, handle


def start_wirefilter(access: Path, core: Path, mgmt: Path, log: Path, tied: bool) -> tuple[int, subprocess.Popen | None]:
    """Join a machine's access switch to the network's core switch through a wirefilter.

    The filter starts transparent; `WireFilter` later sets loss, delay and bandwidth on it
    (a partition is 100% loss: packets vanish but the machine's carrier stays up).
    """
    if not shutil.which("wirefilter"):
        raise XenlabError("wirefilter is not installed (Debian package vde2); run `xenlab doctor`")
    argv = ["wirefilter", "-v", f"{access}:{core}", "-M", str(mgmt), "--mgmtmode", "0600"]
    if tied:
        proc = spawn(argv, log, tied=True, stdin_pipe=True)
        pid, handle = proc.pid, proc
    else:
        pidfile = mgmt.with_name(mgmt.name + ".pid")
        proc = spawn(argv + ["--daemon", "--pidfile", str(pidfile)], log, tied=False)
        if proc.wait(timeout=10) != 0:
            raise XenlabError(f"wirefilter {mgmt.name} failed to start; see {log}")
        pid = int(wait_for(lambda: pidfile.exists() and pidfile.read_text().strip(), f"pid file of {mgmt.name}", 10, 0.05))
        handle = None
    wait_for(mgmt.exists, f"wirefilter control socket {mgmt}", 10, 0.05,
             evidence=lambda: log.read_text(errors="replace")[-500:] if log.exists() else "")
    return pid, handle


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
