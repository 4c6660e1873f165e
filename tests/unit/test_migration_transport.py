"""The tcp migration transport: the sender xl runs, the receiving units, the lab file option."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from xenlab.toolstack.transport import MIGRATE_PORT, SERVICE_TEMPLATE, SOCKET_UNIT, receiver_units, tcp_sender
from xenlab.toolstack.xl import migrate_command


def test_tcp_migrate_command_leaves_the_remote_command_to_the_socket():
    command = migrate_command("vm1", "10.1.2.12", transport="tcp")
    assert command == f"xl migrate -s 'nc -N 10.1.2.12 {MIGRATE_PORT} #' vm1 10.1.2.12"
    # xl runs `exec <-s> <host> xl migrate-receive`: sh must see only nc before the comment
    rune = f"exec {tcp_sender('10.1.2.12')} 10.1.2.12 xl migrate-receive"
    parsed = subprocess.run(["sh", "-c", 'set -- $0 "$@"; shift; printf "%s|" "$@"', *rune.split("#")[0].split()],
                            check=True, capture_output=True, text=True).stdout
    assert parsed == f"nc|-N|10.1.2.12|{MIGRATE_PORT}|"
    with pytest.raises(ValueError):
        migrate_command("vm1", "10.1.2.12", transport="udp")


def test_ssh_stays_the_default():
    assert "ssh -i" in migrate_command("vm1", "10.1.2.12")


def test_the_receiving_socket_listens_on_the_lab_address_for_members_only():
    units = receiver_units("10.1.2.11", ["10.1.2.11", "10.1.2.12"])
    socket, service = units[SOCKET_UNIT], units[SERVICE_TEMPLATE]
    assert f"ListenStream=10.1.2.11:{MIGRATE_PORT}\n" in socket and "Accept=yes" in socket
    assert "IPAddressDeny=any\nIPAddressAllow=10.1.2.11/32 10.1.2.12/32\n" in socket
    assert "xl migrate-receive" in service and "StandardInput=socket" in service and "StandardOutput=socket" in service
    assert "KillMode=process" in service  # xl's domain monitor outlives the connection


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="no systemd-analyze here")
def test_the_units_are_ones_systemd_accepts(tmp_path):
    for name, text in receiver_units("10.1.2.11", ["10.1.2.12"]).items():
        (tmp_path / name).write_text(text)
    (tmp_path / "xenlab-migrate@0.service").symlink_to(tmp_path / SERVICE_TEMPLATE)
    checked = subprocess.run(["systemd-analyze", "verify", "--man=no", str(tmp_path / SOCKET_UNIT)],
                             check=False, capture_output=True, text=True)
    problems = [line for line in checked.stderr.splitlines()
                if "xenlab-migrate" in line and ("Unknown" in line or "Invalid" in line or "Failed to parse" in line)]
    assert problems == []

