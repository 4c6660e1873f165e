"""The guest-side of observation: the heartbeat collector on the services node and where it writes.

The collector (python3 there, no xenlab) is sent over SSH and started with systemd-run;
it appends "NAME SEQ TIME" lines (TIME: the services node's time.time()) to
HEARTBEAT_DIR/NAME.log, flushing five times a second, so gaps in a guest's sequence can
be measured after the fact. Guests send to HEARTBEAT_PORT (see the xl driver's guest
config); `xenlab.observe.LabObserver` reads the logs back.

It is a door into the services node, so it is kept shut to everything but the lab's guests:
- it listens on the services node's address on the lab network only (never 0.0.0.0: on a
  static lab that node is a real machine on a real network);
- every datagram carries an HMAC-SHA256 made with the lab's heartbeat key (`heartbeat_key`:
  random, 0600 in the lab's run directory, 0600 in TOOLS_DIR on the node, given to the
  guests on their kernel command line), and a boot number the guest draws at start: one
  without a valid MAC, or replayed (a sequence number of that boot already taken, or a
  boot the guest has since left), is dropped, so no one can forge heartbeats (and with
  them downtime figures) without the key;
- names are checked, and the files it writes are bounded (MAX_NAMES files of at most
  MAX_FILE_BYTES each), so nothing can fill the node's disk through it;
- `stop_collector` stops it and removes its key; a lab whose services node outlives it
  (a static lab) calls it when it goes down.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import shlex
from pathlib import Path
from typing import Protocol

from ..waiting import wait_for

HEARTBEAT_PORT = 9999
HEARTBEAT_DIR = "/var/lib/xenlab/heartbeats"
TOOLS_DIR = "/usr/local/lib/xenlab"
KEY_FILE = f"{TOOLS_DIR}/heartbeat.key"
IDENTITY_FILE = f"{TOOLS_DIR}/collector.id"  # what the running collector was started with (a hash)
UNIT = "xenlab-heartbeat"
MAX_NAMES = 256  # guests' files one collector writes
MAX_FILE_BYTES = 256 << 20  # per guest: ~25 hours of 10 ms heartbeats


class ServicesNode(Protocol):
    def run(self, command: str, timeout: float = ...): ...

    def succeed(self, command: str, timeout: float = ...) -> str: ...

    def write_file(self, remote: str, content: str, mode: int = ...) -> None: ...


def heartbeat_key(run_root: Path) -> str:
    """The lab's heartbeat key (64 hex digits), made once, 0600 in its run directory's keys/."""
    path = Path(run_root) / "keys" / "heartbeat.key"
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    key = secrets.token_hex(32)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another thread or command made it first: theirs is the lab's
        return path.read_text().strip()
    with os.fdopen(fd, "w") as out:
        out.write(key + "\n")
    return key


def collector_argv(address: str) -> str:
    return (f"python3 {TOOLS_DIR}/collector.py {shlex.quote(address)} {HEARTBEAT_PORT} {HEARTBEAT_DIR} {KEY_FILE} "
            f"{MAX_NAMES} {MAX_FILE_BYTES}")


def start_collector(services: ServicesNode, address: str, key: str) -> None:
    """Start the collector on the services node, listening on `address` (its lab-network
    address) and taking heartbeats made with `key`, unless it runs so already (a lab
    restored from a checkpoint or warm state may run one with another address or key)."""
    argv = collector_argv(address)
    identity = hashlib.sha256(f"{argv}\n{key}\n{COLLECTOR_SOURCE}".encode()).hexdigest()
    if services.run(f"systemctl is-active -q {UNIT} && grep -qxF {identity} {IDENTITY_FILE}").ok:
        return
    services.run(f"systemctl stop {UNIT}; systemctl reset-failed {UNIT}")
    services.succeed(f"mkdir -p {TOOLS_DIR} && chmod 0700 {TOOLS_DIR}")
    services.write_file(f"{TOOLS_DIR}/collector.py", COLLECTOR_SOURCE)
    services.write_file(KEY_FILE, key + "\n", 0o600)
    services.succeed(f"systemd-run --unit={UNIT} --collect {argv} && echo {identity} > {IDENTITY_FILE}")
    wait_for(lambda: services.run(f"systemctl is-active -q {UNIT}").ok,
             "services: heartbeat collector to start", 30, 0.5)


def stop_collector(services: ServicesNode) -> None:
    """Stop the collector and remove its key (its heartbeat logs stay, for reading later)."""
    services.run(f"systemctl stop {UNIT}; systemctl reset-failed {UNIT}; rm -f {KEY_FILE} {IDENTITY_FILE}")


# The collector program. argv: ADDRESS PORT DIRECTORY KEY_FILE MAX_NAMES MAX_FILE_BYTES.
COLLECTOR_SOURCE = r'''
import hashlib, hmac, os, re, socket, sys, time
address, port, directory, key_path = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
MAX_NAMES, MAX_FILE_BYTES, WINDOW = int(sys.argv[5]), int(sys.argv[6]), 1024
NAME = re.compile(rb"[A-Za-z0-9][A-Za-z0-9_-]{0,62}\Z")
with open(key_path, "rb") as f:
    key = f.read().strip()
if len(key) < 32:
    sys.exit("heartbeat key " + key_path + " is too short")
os.umask(0o077)
os.makedirs(directory, mode=0o700, exist_ok=True)
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
sock.bind((address, port))
sock.settimeout(0.2)
files = {}  # name -> [file, bytes written]
boots = {}  # name -> [boot, highest seq, recent seqs taken]
left = {}  # name -> boots it has left (a reboot): their datagrams are replays now


def fresh(name, boot, seq):
    """Neither a replay nor a datagram of a boot the guest has left."""
    state = boots.get(name)
    if state is None or state[0] != boot:
        gone = left.setdefault(name, set())
        if boot in gone:
            return False
        if state is not None:
            gone.add(state[0])
        boots[name] = [boot, seq, {seq}]
        return True
    highest, seen = state[1], state[2]
    if seq > highest:
        state[1] = seq
    elif highest - seq >= WINDOW or seq in seen:
        return False
    seen.add(seq)
    if len(seen) > 2 * WINDOW:
        state[2] = {s for s in seen if s > state[1] - WINDOW}
    return True


last_flush = time.monotonic()
while True:
    try:
        data = sock.recv(256)
        now = time.time()
        parts = data.split()
        if len(parts) == 4 and NAME.match(parts[0]) and len(parts[1]) == 16 and parts[2].isdigit() \
                and len(parts[2]) <= 20:
            mac = hmac.new(key, b" ".join(parts[:3]), hashlib.sha256).hexdigest()[:32].encode()
            if hmac.compare_digest(mac, parts[3]) and fresh(parts[0], parts[1], int(parts[2])):
                name = parts[0].decode()
                entry = files.get(name)
                if entry is None and len(files) < MAX_NAMES:
                    path = os.path.join(directory, name + ".log")
                    entry = files[name] = [open(path, "a"), os.path.getsize(path)]
                line = "%s %s %.6f\n" % (name, parts[2].decode(), now)
                if entry is not None and entry[1] + len(line) <= MAX_FILE_BYTES:
                    entry[0].write(line)
                    entry[1] += len(line)
    except socket.timeout:
        pass
    if time.monotonic() - last_flush > 0.2:
        for entry in files.values():
            entry[0].flush()
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
