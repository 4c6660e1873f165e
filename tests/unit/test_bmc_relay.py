"""The BMC network's tunnel: framing, QEMU options, and one real datagram round trip."""

import os
import socket
import threading
from pathlib import Path

import pytest

from xenlab.lab.bmc_relay import bmc_routes, frame, guestfwd_options, relay_stdio, unframe


def test_frames_come_apart_whole_and_keep_the_rest():
    buffer = bytearray(frame(b"abc") + frame(b"") + frame(b"x" * 300)[:100])
    assert unframe(buffer) == [b"abc", b""]
    assert len(buffer) == 100  # the partial third frame waits for its bytes


def test_routes_number_bmcs_and_give_each_its_own_addresses():
    routes = bmc_routes(["h1", "h2"])
    assert routes["h2"].dom0_address == "127.0.1.2"
    assert routes["h2"].guestfwd_address == "10.0.2.102"
    assert routes["h1"].relay_arg() == "127.0.1.1=10.0.2.101"


def test_guestfwd_options_run_the_relay_as_a_file_with_the_run_dir(tmp_path):
    options = guestfwd_options(tmp_path, bmc_routes(["h1"]))
    assert options.startswith(",guestfwd=tcp:10.0.2.101:623-cmd:")
    assert f"--run-dir {tmp_path}/ --host h1" in options
    assert " -I " in options and options.count(",") == 1


def test_a_comma_in_the_command_is_refused(tmp_path):
    with pytest.raises(ValueError, match="comma"):
        guestfwd_options(Path(str(tmp_path) + ",x"), bmc_routes(["h1"]))


def test_a_datagram_crosses_the_tunnel_and_its_answer_comes_back():
    server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    server.bind(("127.0.0.1", 0))
    server.settimeout(10)

    def echo():
        data, peer = server.recvfrom(2048)
        server.sendto(data.upper(), peer)

    echoing = threading.Thread(target=echo)
    echoing.start()
    to_relay_r, to_relay_w = os.pipe()
    from_relay_r, from_relay_w = os.pipe()
    relay = threading.Thread(target=relay_stdio, args=(server.getsockname()[1], to_relay_r, from_relay_w, 10.0))
    relay.start()
    os.write(to_relay_w, frame(b"ping"))
    answer = bytearray()
    while len(answer) < 6:
        answer += os.read(from_relay_r, 64)
    assert unframe(answer) == [b"PING"]
    os.close(to_relay_w)  # the connection ends: the relay returns
    relay.join(timeout=10)
    echoing.join(timeout=10)
    assert not relay.is_alive()
    server.close()
