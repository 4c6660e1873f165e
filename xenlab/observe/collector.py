"""The guest-side of observation: the heartbeat collector on the services node and where it writes.

The collector (python3 there, no xenlab) is sent over SSH and started with systemd-run;
it appends "NAME SEQ TIME" lines (TIME: the services node's time.time()) to
HEARTBEAT_DIR/NAME.log, flushing five times a second, so gaps in a guest's sequence can
be measured after the fact. Guests send to HEARTBEAT_PORT (see the xl driver's guest
config); `xenlab.observe.LabObserver` reads the logs back.
"""

from __future__ import annotations

from typing import Protocol

from ..waiting import wait_for

HEARTBEAT_PORT = 9999
HEARTBEAT_DIR = "/var/lib/xenlab/heartbeats"
TOOLS_DIR = "/usr/local/lib/xenlab"
UNIT = "xenlab-heartbeat"


class ServicesNode(Protocol):
    def run(self, command: str, timeout: float = ...): ...

    def succeed(self, command: str, timeout: float = ...) -> str: ...

    def write_file(self, remote: str, content: str, mode: int = ...) -> None: ...


def start_collector(services: ServicesNode) -> None:
    """Start the collector on the services node unless it runs already."""
    if services.run(f"systemctl is-active -q {UNIT}").ok:
        return
    services.succeed(f"mkdir -p {TOOLS_DIR}")
    services.write_file(f"{TOOLS_DIR}/collector.py", COLLECTOR_SOURCE)
    services.succeed(f"systemd-run --unit={UNIT} --collect python3 {TOOLS_DIR}/collector.py "
                     f"{HEARTBEAT_PORT} {HEARTBEAT_DIR}")
    wait_for(lambda: services.run(f"systemctl is-active -q {UNIT}").ok,
             "services: heartbeat collector to start", 30, 0.5)

COLLECTOR_SOURCE = r'''
import os, socket, sys, time
port, directory = int(sys.argv[1]), sys.argv[2]
os.makedirs(directory, exist_ok=True)
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
sock.bind(("0.0.0.0", port))
sock.settimeout(0.2)
files, last_flush = {}, time.monotonic()
while True:
    try:
        data = sock.recv(256)
        now = time.time()
        parts = data.split()
        if len(parts) == 2 and parts[1].isdigit() and parts[0].replace(b"-", b"").isalnum():
            name = parts[0].decode()
            f = files.get(name)
            if f is None:
                f = files[name] = open(os.path.join(directory, name + ".log"), "a")
            f.write("%s %s %.6f\n" % (name, parts[1].decode(), now))
    except socket.timeout:
        pass
    if time.monotonic() - last_flush > 0.2:
        for f in files.values():
            f.flush()
        last_flush = time.monotonic()
'''

DISK_PREFIX_SOURCE = r'''
import sys
path, record, tail = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
out = sys.stdout.buffer
with open(path, "rb") as f:
    while True:
        block = f.read(record)
        if not block:
            break
        out.write(block)
        if block.count(0) == len(block):
            out.write(f.read(tail))
            break
'''
