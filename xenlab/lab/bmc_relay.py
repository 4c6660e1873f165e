"""The BMC network of a QEMU lab: each host's virtual BMC reachable from the other hosts' dom0.

A rack's servers reach each other's BMCs on a management network; fencing agents in dom0
(`fence_ipmilan`) speak IPMI over LAN (UDP 623) to them. A lab's BMCs listen on 127.0.0.1
of this machine only, and a host's management NIC is QEMU user-mode networking with
`restrict=on`, which drops every datagram a guest sends to the machine (10.0.2.2) and lets
only TCP through to `guestfwd` entries. So the BMC network is carried over those:

    dom0: fence_ipmilan -> UDP 127.0.1.N:623 -> relay in dom0 (files/bmc-relay-dom0.py)
          -> TCP 10.0.2.(100+N):623 (guestfwd on the host's own management NIC)
    this machine: QEMU runs `python -m xenlab.lab.bmc_relay --run-dir RUN/ --host hN` per
          connection -> UDP 127.0.0.1:PORT of hN's BMC (the same process ipmitool reaches)

Each datagram crosses the TCP stream as a 2-byte big-endian length and its bytes. The relay
on this machine opens no listening socket (its stdin and stdout are QEMU's connection), so
nothing listens beyond 127.0.0.1 and nothing leaves the machine. Like every process of a
lab, its command line holds the run directory, so `xenlab down` and the sweep find it; it
runs as a file (`python -I .../bmc_relay.py`), importing nothing of xenlab, so that a
connection costs no package import.
"""

from __future__ import annotations

import argparse
import json
import os
import select
import socket
import struct
import sys
from dataclasses import dataclass
from pathlib import Path

IPMI_PORT = 623
GUESTFWD_BASE = 100  # 10.0.2.(100+N): where a dom0 reaches BMC number N through its NIC
DOM0_ADDRESS_BASE = "127.0.1."  # 127.0.1.N:623 in every dom0: BMC number N (the relay binds it)
DOM0_RELAY = Path(__file__).parent / "files" / "bmc-relay-dom0.py"
DOM0_RELAY_PATH = "/usr/local/sbin/xenlab-bmc-relay"
MAX_DATAGRAM = 1500


@dataclass(frozen=True)
class BmcRoute:
    """How a dom0 reaches one host's BMC: the address it speaks IPMI to, and the tunnel behind it."""

    host: str
    number: int  # 1-based, the host's place among the lab's BMC hosts

    @property
    def dom0_address(self) -> str:
        return f"{DOM0_ADDRESS_BASE}{self.number}"

    @property
    def guestfwd_address(self) -> str:
        return f"10.0.2.{GUESTFWD_BASE + self.number}"

    def relay_arg(self) -> str:
        """The dom0 relay's argument for this BMC: LISTEN_ADDRESS=TUNNEL_ADDRESS."""
        return f"{self.dom0_address}={self.guestfwd_address}"


def bmc_routes(hosts_with_bmc: list[str]) -> dict[str, BmcRoute]:
    return {host: BmcRoute(host, index + 1) for index, host in enumerate(hosts_with_bmc)}


def guestfwd_options(run_root: Path, routes: dict[str, BmcRoute]) -> str:
    """The `,guestfwd=...` options of a host's management netdev: one tunnel per BMC."""
    options = []
    for route in routes.values():
        # run as a file in isolated mode: importing xenlab would cost each connection seconds
        command = f"{sys.executable} -I {Path(__file__).resolve()} --run-dir {run_root}/ --host {route.host}"
        if "," in command:
            raise ValueError(f"a comma in the BMC relay's command line cannot go into QEMU's options: {command}")
        options.append(f"guestfwd=tcp:{route.guestfwd_address}:{IPMI_PORT}-cmd:{command}")
    return "".join("," + option for option in options)


# -- the framing (pure) -------------------------------------------------------------------
def frame(datagram: bytes) -> bytes:
    return struct.pack(">H", len(datagram)) + datagram


def unframe(buffer: bytearray) -> list[bytes]:
    """Whole datagrams off the front of `buffer` (what is left stays in it)."""
    out = []
    while len(buffer) >= 2:
        (length,) = struct.unpack(">H", buffer[:2])
        if len(buffer) < 2 + length:
            break
        out.append(bytes(buffer[2:2 + length]))
        del buffer[:2 + length]
    return out


# -- the machine's side: one connection from a dom0 to one BMC ----------------------------
def relay_stdio(bmc_port: int, stdin_fd: int = 0, stdout_fd: int = 1, idle_s: float = 300.0) -> None:
    """Datagrams framed on stdin go to 127.0.0.1:`bmc_port`; its answers go back framed on stdout."""
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    buffer = bytearray()
    try:
        while True:
            ready, _, _ = select.select([stdin_fd, udp], [], [], idle_s)
            if not ready:
                return
            if stdin_fd in ready:
                chunk = os.read(stdin_fd, 65536)
                if not chunk:
                    return
                buffer += chunk
                for datagram in unframe(buffer):
                    udp.sendto(datagram, ("127.0.0.1", bmc_port))
            if udp in ready:
                datagram = udp.recv(MAX_DATAGRAM)
                os.write(stdout_fd, frame(datagram))
    finally:
        udp.close()


def bmc_port(run_root: Path, host: str) -> int | None:
    """The port `host`'s BMC listens on (lab/bmc.py's RUN/bmc/HOST.json), read without xenlab."""
    try:
        return int(json.loads((run_root / "bmc" / f"{host}.json").read_text())["port"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m xenlab.lab.bmc_relay", description=__doc__.split("\n\n")[0])
    parser.add_argument("--run-dir", required=True, help="the lab's run directory (holds bmc/HOST.json)")
    parser.add_argument("--host", required=True, help="the host whose BMC this connection reaches")
    args = parser.parse_args(argv)
    port = bmc_port(Path(args.run_dir), args.host)
    if port is None:
        print(f"bmc relay: {args.host} has no BMC running", file=sys.stderr)
        return 1
    relay_stdio(port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
