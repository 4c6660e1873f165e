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
        pidfile = socket_dir.with_suffix(".pid")
        proc = spawn(argv + ["--daemon", "--pidfile", str(pidfile)], log, tied=False)
        if proc.wait(timeout=10) != 0:
            raise XenlabError(f"vde_switch for {socket_dir.name} failed to start; see {log}")
        pid = int(wait_for(lambda: pidfile.exists() and pidfile.read_text().strip(), f"pid file of {socket_dir.name}", 10, 0.05))
        handle = None
    wait_for(lambda: (socket_dir / "ctl").exists(), f"vde switch socket {socket_dir}/ctl", 10, 0.05,
             evidence=lambda: log.read_text(errors="replace")[-500:] if log.exists() else "")
    return pid, handle
