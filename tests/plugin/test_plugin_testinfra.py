"""testinfra Hosts of lab machines talk to a real SSH server (paramiko, in this process)
with the lab's key, and refuse a server whose key is not the lab's known_hosts entry."""

from __future__ import annotations

import socket
import threading
from pathlib import Path
from types import SimpleNamespace

import paramiko
import pytest

from xenlab.fixtures.remote import close_testinfra_host, lab_testinfra_host
from xenlab.images.identity import generate_keypair


class FakeDom0(paramiko.ServerInterface):
    """Accepts root with one public key; answers every command with its own text."""

    def __init__(self, client_key: paramiko.PKey):
        self.client_key = client_key
        self.commands: list[str] = []

    def get_allowed_auths(self, username):
        return "publickey"

    def check_auth_publickey(self, username, key):
        ok = username == "root" and key.asbytes() == self.client_key.asbytes()
        return paramiko.AUTH_SUCCESSFUL if ok else paramiko.AUTH_FAILED

    def check_channel_request(self, kind, chanid):
        return paramiko.OPEN_SUCCEEDED if kind == "session" else paramiko.OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED

    def check_channel_exec_request(self, channel, command):
        self.commands.append(command.decode())

        def answer():
            channel.sendall(b"xen-4.17 says: " + command + b"\n")
            channel.send_exit_status(0)
            # EOF, not close: the answer may overtake paramiko's reply to the exec request,
            # and a client whose channel is closed before that reply gives up on it.
            channel.shutdown_write()
        threading.Thread(target=answer, daemon=True).start()
        return True


@pytest.fixture
def machine(tmp_path):
    """A lab machine's SSH side: keys in <run dir>/keys, a server on a 127.0.0.1 port."""
    keys = tmp_path / "run" / "keys"
    keys.mkdir(parents=True)
    client = generate_keypair(keys / "id_ed25519", "xenlab-test")
    host_key = generate_keypair(keys / "host-h1", "root@h1")
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    (keys / "known_hosts").write_text(f"[127.0.0.1]:{port} {' '.join(host_key.public_line.split()[:2])}\n")
    server = FakeDom0(paramiko.Ed25519Key.from_private_key_file(str(keys / "id_ed25519")))
    transports: list[paramiko.Transport] = []

    def serve():
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            transport = paramiko.Transport(conn)
            transport.add_server_key(paramiko.Ed25519Key.from_private_key_file(str(keys / "host-h1")))
            transport.start_server(server=server)
            transports.append(transport)

    threading.Thread(target=serve, daemon=True).start()
    lab = SimpleNamespace(run=SimpleNamespace(root=tmp_path / "run"))
    yield SimpleNamespace(name="h1", lab=lab, ssh_port=port, server=server, keys=keys, client=client)
    listener.close()
    for transport in transports:
        transport.close()


def test_testinfra_host_runs_commands_with_the_labs_key(machine):
    host = lab_testinfra_host(machine, timeout=10)
    try:
        assert host.check_output("xl info") == "xen-4.17 says: xl info"
        assert machine.server.commands == ["xl info"]
        assert host.backend.host.name == "127.0.0.1" and int(host.backend.host.port) == machine.ssh_port
    finally:
        close_testinfra_host(host)


def test_a_server_with_another_key_is_refused(machine):
    other = generate_keypair(Path(machine.keys) / "other", "impostor")
    known = machine.keys / "known_hosts"
    known.write_text(f"[127.0.0.1]:{machine.ssh_port} {' '.join(other.public_line.split()[:2])}\n")
    host = lab_testinfra_host(machine, timeout=10)
    with pytest.raises(paramiko.SSHException):
        host.run("xl info")
    assert machine.server.commands == []
