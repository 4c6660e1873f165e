"""The heartbeat collector program, run for real in a throwaway network namespace (the
"services node") with a guest namespace beside it on a veth pair (the "lab network"): it
listens on the lab address only, takes the guest's real heartbeat sender (heartbeat.c,
compiled here) with the lab's key, and drops forged, replayed and oversized input.

Order makes every check deterministic: datagrams from one sender reach the collector's one
socket in order, so once a valid "sentinel" heartbeat sent last is in its file, every
datagram sent before it has been judged."""

from __future__ import annotations

import hashlib
import hmac
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from xenlab.observe.collector import COLLECTOR_SOURCE, HEARTBEAT_PORT, heartbeat_key
from xenlab.waiting import wait_for

SERVICES_ADDRESS, GUEST_ADDRESS = "10.250.0.2", "10.250.0.101"
MAX_NAMES, MAX_FILE_BYTES = 4, 4096

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("ip"),
                                reason="network namespaces need root and iproute2")


def _ip(*argv: str) -> None:
    subprocess.run(["ip", *argv], check=True, capture_output=True)


class Node:
    def __init__(self, namespace: str):
        self.namespace = namespace

    def argv(self, *argv: str) -> list[str]:
        return ["ip", "netns", "exec", self.namespace, *argv]


@pytest.fixture
def lab_network():
    """Two namespaces, services and guest, joined by a veth pair on 10.250.0.0/24."""
    tag = f"{os.getpid() % 100000}"
    services, guest = f"xlhb-s{tag}", f"xlhb-g{tag}"
    _ip("netns", "add", services)
    try:
        _ip("netns", "add", guest)
        _ip("link", "add", f"xlhbs{tag}", "netns", services, "type", "veth", "peer", "name", f"xlhbg{tag}",
            "netns", guest)
        for namespace, link, address in ((services, f"xlhbs{tag}", SERVICES_ADDRESS),
                                         (guest, f"xlhbg{tag}", GUEST_ADDRESS)):
            _ip("-n", namespace, "link", "set", "lo", "up")
            _ip("-n", namespace, "addr", "add", f"{address}/24", "dev", link)
            _ip("-n", namespace, "link", "set", link, "up")
        yield Node(services), Node(guest)
    finally:
        subprocess.run(["ip", "netns", "del", guest], check=False, capture_output=True)
        subprocess.run(["ip", "netns", "del", services], check=False, capture_output=True)


@pytest.fixture
def collector(lab_network, tmp_path):
    """The real collector program on the services node, as start_collector runs it."""
    services, guest = lab_network
    program = tmp_path / "collector.py"
    program.write_text(COLLECTOR_SOURCE)
    key = heartbeat_key(tmp_path / "run")
    key_file = tmp_path / "heartbeat.key"
    key_file.write_text(key + "\n")
    logs = tmp_path / "heartbeats"
    proc = subprocess.Popen(services.argv(sys.executable, str(program), SERVICES_ADDRESS, str(HEARTBEAT_PORT),
                                          str(logs), str(key_file), str(MAX_NAMES), str(MAX_FILE_BYTES)),
                            stderr=subprocess.PIPE, text=True)

    def listening() -> str:
        if proc.poll() is not None:
            raise AssertionError(f"the collector exited: {proc.stderr.read()}")
        return subprocess.run(services.argv("ss", "-Hlun"), capture_output=True, text=True, check=True).stdout.strip()

    wait_for(listening, "the collector to listen", 20, 0.05)
    try:
        yield services, guest, key, logs, listening()
    finally:
        proc.kill()
        proc.wait()


def datagram(key: str, name: str, seq: int, boot: str = "0123456789abcdef") -> bytes:
    message = f"{name} {boot} {seq}".encode()
    return message + b" " + hmac.new(key.encode(), message, hashlib.sha256).hexdigest()[:32].encode() + b"\n"


def send(guest: Node, *datagrams: bytes, to: str = SERVICES_ADDRESS) -> None:
    """Send `datagrams` in order from the guest's namespace."""
    code = ("import socket, sys\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
            "for line in sys.stdin.buffer.read().split(b'\\0'):\n"
            f"    s.sendto(line, ({to!r}, {HEARTBEAT_PORT}))\n")
    subprocess.run(guest.argv(sys.executable, "-c", code), input=b"\0".join(datagrams), check=True)


def seqs(logs: Path, name: str) -> list[int]:
    path = logs / f"{name}.log"
    return [int(line.split()[1]) for line in path.read_text().splitlines()] if path.exists() else []


def judged(logs: Path, key: str, guest: Node, seq: int) -> None:
    """Send a valid sentinel heartbeat last and wait until it is written: all before it are judged."""
    send(guest, datagram(key, "sentinel", seq))
    wait_for(lambda: seq in seqs(logs, "sentinel"), "the sentinel heartbeat to be written", 20, 0.05)


def test_it_listens_on_the_lab_address_only(collector):
    _, _, _, _, sockets = collector
    assert sockets.split()[3] == f"{SERVICES_ADDRESS}:{HEARTBEAT_PORT}"  # not 0.0.0.0, not *
    assert len(sockets.splitlines()) == 1


@pytest.mark.skipif(not shutil.which("gcc"), reason="gcc builds the guest's heartbeat sender")
def test_the_guests_real_sender_with_the_labs_key_is_collected(collector, tmp_path):
    _, guest, key, logs, _ = collector
    sender = tmp_path / "xenlab-heartbeat"
    source = Path(__file__).resolve().parents[2] / "xenlab" / "images" / "files" / "heartbeat.c"
    subprocess.run(["gcc", "-O2", "-o", str(sender), str(source)], check=True, capture_output=True)
    proc = subprocess.Popen(guest.argv(str(sender), SERVICES_ADDRESS, str(HEARTBEAT_PORT), "vm1", key, "10"))
    try:
        wait_for(lambda: len(seqs(logs, "vm1")) >= 5, "five heartbeats of vm1", 20, 0.05)
    finally:
        proc.kill()
        proc.wait()
    got = seqs(logs, "vm1")
    assert got == sorted(got) and got[0] == 0
    assert oct((logs / "vm1.log").stat().st_mode & 0o777) == "0o600"


def test_forged_unauthenticated_and_other_labs_heartbeats_are_dropped(collector):
    _, guest, key, logs, _ = collector
    other_lab = "f" * 64
    send(guest,
         b"vm2 1\n",  # the old, unauthenticated format
         datagram(other_lab, "vm2", 1),  # another lab's key
         datagram(key, "vm2", 2)[:-3] + b"00\n",  # a MAC tampered with
         datagram(key, "vm2", 3).replace(b" 3 ", b" 4 "))  # a sequence number changed under a valid MAC
    judged(logs, key, guest, 1)
    assert not (logs / "vm2.log").exists()


def test_replayed_heartbeats_and_those_of_a_left_boot_are_dropped(collector):
    _, guest, key, logs, _ = collector
    first, second = "a" * 16, "b" * 16
    send(guest, datagram(key, "vm3", 0, first), datagram(key, "vm3", 1, first), datagram(key, "vm3", 0, first),
         datagram(key, "vm3", 0, second),  # the guest rebooted
         datagram(key, "vm3", 2, first))  # a datagram of its earlier boot, replayed
    judged(logs, key, guest, 1)
    assert seqs(logs, "vm3") == [0, 1, 0]


def test_names_are_checked_and_files_bounded(collector):
    _, guest, key, logs, _ = collector
    judged(logs, key, guest, 0)  # the sentinel has its file
    send(guest, datagram(key, "../../etc/x", 1), datagram(key, ".hidden", 1))
    for name in ("n1", "n2", "n3"):  # with the sentinel's, MAX_NAMES files
        send(guest, datagram(key, name, 0))
    send(guest, datagram(key, "n4", 0))  # one name too many
    send(guest, *(datagram(key, "n1", seq) for seq in range(1, 400)))  # more than MAX_FILE_BYTES of lines
    judged(logs, key, guest, 1)
    assert sorted(p.name for p in logs.iterdir()) == ["n1.log", "n2.log", "n3.log", "sentinel.log"]
    assert 0 < (logs / "n1.log").stat().st_size <= MAX_FILE_BYTES
    assert not (Path("/etc/x.log")).exists()


def test_the_labs_key_is_made_once_and_private(tmp_path):
    key = heartbeat_key(tmp_path / "run")
    assert len(key) == 64 and heartbeat_key(tmp_path / "run") == key
    assert oct((tmp_path / "run" / "keys" / "heartbeat.key").stat().st_mode & 0o777) == "0o600"
    assert heartbeat_key(tmp_path / "other") != key

