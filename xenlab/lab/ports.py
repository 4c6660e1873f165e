"""The SSH port of each lab machine: QEMU's user networking forwards it (`hostfwd`), binding
it itself when it starts, seconds after xenlab chose it. Two labs brought up at once
(`pytest -n 2`) must never be handed the same port in that gap, and a port some other
program took meanwhile must not fail the bring-up:

- `reserve_port`: a port the kernel reports free, claimed in the run base's `ports/`
  directory by creating `ports/PORT` exclusively (O_EXCL): of two xenlab processes asking
  at once, only one gets a port. The claim names the lab's run directory and holds until
  that directory is gone (`down`); a claim whose run directory no longer exists is stale
  and is taken over (by renaming it away first, which only one taker can do).
- `hostfwd_refused`: QEMU's own error when the port was taken by anything else (another
  user's program) between the choice and QEMU's bind; `Host.launch` then reserves another
  port and starts QEMU again.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

from ..errors import XenlabError

PORTS_DIR = ".ports"  # a dot: no lab is named so (lab names are lowercase, digits and "-"), no sweep takes it
# QEMU 7.2 exits 1 with "...: Could not set up host forwarding rule 'tcp:127.0.0.1:PORT-:22'"
HOSTFWD_REFUSED = "Could not set up host forwarding rule"
ATTEMPTS = 200


def _kernel_free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _claim(claim: Path, run_root: Path) -> bool:
    try:
        fd = os.open(claim, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as out:
        out.write(str(run_root) + "\n")
    return True


def _stale(claim: Path) -> bool:
    try:
        owner = Path(claim.read_text().strip())
    except FileNotFoundError:
        return True
    return not owner.is_dir()


def reserve_port(run_root: Path) -> int:
    """A port on 127.0.0.1 free now and claimed for the lab in `run_root` (see the module's doc)."""
    run_root = Path(run_root)
    claims = run_root.parent / PORTS_DIR
    claims.mkdir(mode=0o700, exist_ok=True)
    for _ in range(ATTEMPTS):
        port = _kernel_free_port()
        claim = claims / str(port)
        if _claim(claim, run_root):
            return port
        if _stale(claim):
            away = claims / f".stale-{port}-{os.getpid()}"
            try:
                claim.rename(away)  # one taker wins; the others find the claim gone or fresh
            except FileNotFoundError:
                continue
            away.unlink(missing_ok=True)
            if _claim(claim, run_root):
                return port
    raise XenlabError(f"no free port for SSH forwarding after {ATTEMPTS} attempts (claims in {claims})")


def release_ports(run_root: Path) -> None:
    """Drop the claims of the lab in `run_root` (at `down`; stale claims are taken over anyway)."""
    claims = Path(run_root).parent / PORTS_DIR
    for claim in claims.glob("[0-9]*") if claims.is_dir() else ():
        try:
            if claim.read_text().strip() == str(run_root):
                claim.unlink(missing_ok=True)
        except FileNotFoundError:
            continue


def hostfwd_refused(qemu_output: str, port: int) -> bool:
    """Did QEMU fail because `port` was taken before it could forward it?"""
    return f"{HOSTFWD_REFUSED} 'tcp:127.0.0.1:{port}-" in qemu_output
