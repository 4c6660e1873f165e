"""How `xl migrate` carries a guest between the members of an xl pool.

`ssh` (the default): xl's own way, `xl migrate -s SSH`, through the pool's SSH trust; the
stream is encrypted, and under TCG its cipher holds it to 2-2.5 MiB/s dom0 to dom0 (measured
with bench/migration_profile.py --streams, plain TCP 6 MiB/s). `tcp` (a lab option,
`migration_transport: tcp`): the stream in the clear over the lab network to a systemd
socket on each member that runs `xl migrate-receive` per connection, accepting only the
pool's members' addresses; nothing else changes in Xen's migration. A guest's memory then
crosses the lab's own virtual network unencrypted, which is why it is never the default.
"""

from __future__ import annotations

import shlex
from typing import Protocol

MIGRATE_PORT = 8002
SOCKET_UNIT = "xenlab-migrate.socket"
SERVICE_TEMPLATE = "xenlab-migrate@.service"
UNIT_DIR = "/etc/systemd/system"


def receiver_units(listen_address: str, allowed: list[str]) -> dict[str, str]:
    """The socket and service units of one member: a connection on its lab address from a
    pool member runs `xl migrate-receive` with the connection as its stdin and stdout. The
    receiver's monitor (xl daemonizes to follow the domain) outlives the connection, as it
    does under sshd."""
    allow = " ".join(f"{a}/32" for a in allowed)
    socket = (
        "[Unit]\nDescription=xenlab: incoming xl migrations on the lab network (migration_transport: tcp)\n\n"
        f"[Socket]\nListenStream={listen_address}:{MIGRATE_PORT}\nAccept=yes\nFreeBind=yes\n"
        f"IPAddressDeny=any\nIPAddressAllow={allow}\n\n[Install]\nWantedBy=sockets.target\n")
    service = (
        "[Unit]\nDescription=xenlab: one incoming xl migration\n\n"
        "[Service]\nExecStart=/bin/sh -c 'exec xl migrate-receive'\nStandardInput=socket\nStandardOutput=socket\n"
        "StandardError=journal\nKillMode=process\n")
    return {SOCKET_UNIT: socket, SERVICE_TEMPLATE: service}


def tcp_sender(destination: str) -> str:
    """xl's `-s` for the tcp transport. xl runs `exec <-s> <host> xl migrate-receive` with
    sh; the `#` leaves the host and the remote command to the receiving socket's unit."""
    return f"nc -N {shlex.quote(destination)} {MIGRATE_PORT} #"


class ReceivingHost(Protocol):
    def write_file(self, path: str, content: str, mode: int = 0o644) -> None: ...

    def succeed(self, command: str, timeout: float = ...) -> str: ...


def install_receiver(host: ReceivingHost, listen_address: str, members: list[str]) -> None:
    """Put the receiving socket on a member (idempotent: rewritten and restarted each time)."""
    for name, text in receiver_units(listen_address, members).items():
        host.write_file(f"{UNIT_DIR}/{name}", text, 0o644)
    host.succeed(f"systemctl daemon-reload && systemctl restart {SOCKET_UNIT}", timeout=120)
