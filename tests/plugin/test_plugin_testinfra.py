"""testinfra Hosts of lab machines talk to a real SSH server (paramiko, in this process)
with the lab's key, and refuse a server whose key is not the lab's known_hosts entry."""

from __future__ import annotations

import socket
import threading
from pathlib import Path
from types import SimpleNamespace

import paramiko
import pytest

from xenlab.fixtures.remote import close_testinfra_host, lab_testinfra_host, lab_testinfra_hosts
from xenlab.images.identity import generate_keypair
from xenlab.lab.contract import Unsupported
from xenlab.lab.ssh import RemoteShell, SSHAccess


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


class ShellMachine(RemoteShell):
    """A machine with a shell, reached as every lab host is: its own SSHAccess, host key pinned."""

    def __init__(self, name: str, port: int, key: Path, host_public_line: str, address: str = "127.0.0.1"):
        self.name, self._ssh = name, None
        self.port, self.key, self.host_public_line, self.address_ = port, key, host_public_line, address

    @property
    def ssh(self) -> SSHAccess:
        if self._ssh is None:
            self._ssh = SSHAccess(self.name, self.port, str(self.key), self.host_public_line, address=self.address_)
        return self._ssh


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
    shell = ShellMachine("h1", port, keys / "id_ed25519", host_key.public_line)
    yield SimpleNamespace(shell=shell, name="h1", ssh_port=port, server=server, keys=keys, client=client)
    listener.close()
    for transport in transports:
        transport.close()


def test_testinfra_host_runs_commands_with_the_labs_key(machine):
    host = lab_testinfra_host(machine.shell, timeout=10)
    try:
        assert host.check_output("xl info") == "xen-4.17 says: xl info"
        assert machine.server.commands == ["xl info"]
        assert host.backend.host.name == "127.0.0.1" and int(host.backend.host.port) == machine.ssh_port
    finally:
        close_testinfra_host(host)


def test_a_server_with_another_key_is_refused(machine):
    other = generate_keypair(Path(machine.keys) / "other", "impostor")
    impostor = ShellMachine("h1", machine.ssh_port, machine.keys / "id_ed25519", other.public_line)
    host = lab_testinfra_host(impostor, timeout=10)
    with pytest.raises(paramiko.SSHException):
        host.run("xl info")
    assert machine.server.commands == []


def test_lab_testinfra_hosts_a_lab_without_shells_is_refused_naming_the_shell(tmp_path):
    """issue 26: on a sim lab the fixture was an empty dict, so `for ... in testinfra_hosts` passed over nothing."""
    from xenlab.lab.sim import SimLab
    from xenlab.spec import load_lab

    repo = Path(__file__).resolve().parents[2]
    with SimLab(load_lab(repo / "labs" / "xapi-sim-pool3.yaml")) as lab:
        lab.up()
        with pytest.raises(Unsupported, match="h1 of lab xapi-sim-pool3 has no shell: a simulated host"):
            lab_testinfra_hosts(lab)
        with pytest.raises(Unsupported, match="no shell"):
            lab.hosts[0].succeed("xl info")
        with pytest.raises(Unsupported, match="no console"):
            lab.hosts[0].serial_tail()
        assert lab.hosts[0].can("power") and not lab.hosts[0].can("shell")


def rack_file(machine, tmp_path) -> Path:
    """A static xl lab whose host and services node are the fake dom0's SSH server."""
    known = tmp_path / "known_hosts"
    known.write_text((machine.keys / "known_hosts").read_text())
    lab_file = tmp_path / "rack.yaml"
    lab_file.write_text(f"""name: rack
backend: static
toolstack: xl
known_hosts: {known}
networks:
  pool: {{subnet: 192.168.50.0/24}}
hosts:
  h1:
    address: 192.168.50.11
    ssh: {{host: 127.0.0.1, port: {machine.ssh_port}, user: root, key_file: {machine.keys / "id_ed25519"}}}
services:
  ssh: {{host: 127.0.0.1, port: {machine.ssh_port}, key_file: {machine.keys / "id_ed25519"}}}
  address: 192.168.50.2
  nfs_export: /srv/xenlab
""")
    return lab_file


def test_testinfra_reaches_a_static_host_at_its_own_address_with_the_lab_files_key(machine, tmp_path):
    """issue 26: a static host's testinfra Host pointed at root@127.0.0.1:22 with a key that did not exist."""
    from xenlab.lab.static import StaticLab
    from xenlab.spec import load_lab

    lab_file = rack_file(machine, tmp_path)
    lab = StaticLab(load_lab(lab_file), str(lab_file))
    hosts = lab_testinfra_hosts(lab)
    try:
        assert sorted(hosts) == ["h1", "services"]
        assert hosts["h1"].check_output("xl info") == "xen-4.17 says: xl info"
        assert int(hosts["h1"].backend.host.port) == machine.ssh_port
    finally:
        for host in hosts.values():
            close_testinfra_host(host)


def test_xenlab_ssh_console_power_and_link_on_a_static_lab(machine, tmp_path):
    """issue 30: `xenlab ssh` reaches a real server as its lab file says; what xenlab cannot do
    there (console, power without a BMC, a cable) is refused naming the capability and why."""
    from click.testing import CliRunner

    from xenlab.cli import main

    lab_file = str(rack_file(machine, tmp_path))
    ran = CliRunner().invoke(main, ["ssh", "--lab", lab_file, "h1", "xl", "info"])
    assert ran.exit_code == 0 and ran.output == "xen-4.17 says: xl info\n", ran.output
    assert machine.server.commands == ["xl info"]
    refusals = ((["console", "--lab", lab_file, "h1"], "h1 of lab rack has no console: xenlab does not read"),
                (["power", "--lab", lab_file, "h1", "off"], "h1 of lab rack has no power: the lab file gives it no"),
                (["link", "--lab", lab_file, "h1", "pool", "down"], "h1 of lab rack has no link: xenlab controls no"))
    for args, said in refusals:
        refused = CliRunner().invoke(main, args)
        assert refused.exit_code == 1 and said in " ".join(refused.output.split()), refused.output
        assert "Traceback" not in refused.output
    assert machine.server.commands == ["xl info"]  # nothing else was sent
