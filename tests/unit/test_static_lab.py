"""Static labs: their lab files (good and bad), their credentials (never in a message, a
state file or a status), what they can and cannot do, their power through a real BMC, and
their firewall rules loaded into a throwaway network namespace."""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from xenlab.drivers import drivers_for
from xenlab.errors import SpecError, XenlabError
from xenlab.images.identity import generate_keypair
from xenlab.lab import firewall
from xenlab.lab.bmc import credentials_path, read_credentials, start_bmc
from xenlab.lab.labs import make_lab
from xenlab.lab.processes import cmdline, owned_pids, sweep
from xenlab.lab.static import StaticLab, known_host_key, probe_host
from xenlab.lab.static_faults import StaticFaults
from xenlab.scenario.model import load_scenario
from xenlab.scenario.session import fit
from xenlab.spec import load_lab
from xenlab.toolstack.xl import XlToolstack

REPO = Path(__file__).resolve().parents[2]
SECRET = "s3cret-Bmc-pw-4711"


def write_lab(directory: Path, body: str, *, ipmi_h2: str | None = None) -> Path:
    """A static lab file for two hosts in `directory`, with its key, known_hosts and password file."""
    generate_keypair(directory / "id_ed25519", "xenlab-test")
    host_key = generate_keypair(directory / "hostkey", "root@h")
    (directory / "known_hosts").write_text(
        f"[127.0.0.1]:2201 {' '.join(host_key.public_line.split()[:2])}\n"
        f"[127.0.0.1]:2202 {' '.join(host_key.public_line.split()[:2])}\n"
        f"[127.0.0.1]:2203 {' '.join(host_key.public_line.split()[:2])}\n")
    (directory / "bmc-password").write_text(SECRET + "\n")
    os.chmod(directory / "bmc-password", 0o600)
    h2_ipmi = ipmi_h2 if ipmi_h2 is not None else "{address: 127.0.0.1, port: 6232, user: ADMIN, password_file: bmc-password}"
    text = f"""name: rack
backend: static
known_hosts: known_hosts
networks:
  pool: {{subnet: 192.168.77.0/24}}
hosts:
  h1:
    ssh: {{host: 127.0.0.1, port: 2201, key_file: id_ed25519}}
    address: 192.168.77.11
    ipmi: {{address: 127.0.0.1, port: 6231, user: ADMIN, password_file: bmc-password}}
  h2:
    ssh: {{host: 127.0.0.1, port: 2202, key_file: id_ed25519}}
    address: 192.168.77.12
    ipmi: {h2_ipmi}
services:
  ssh: {{host: 127.0.0.1, port: 2203, key_file: id_ed25519}}
  address: 192.168.77.2
{body}"""
    path = directory / "rack.yaml"
    path.write_text(text)
    return path


def test_a_static_lab_file_loads_with_hosts_by_address(tmp_path):
    spec = load_lab(write_lab(tmp_path, ""))
    assert spec.backend == "static" and spec.static_toolstack == "xl"
    assert spec.hosts["h1"].ssh.port == 2201 and spec.hosts["h1"].address == "192.168.77.11"
    assert spec.hosts["h2"].ipmi.password_file == "bmc-password"
    assert SECRET not in spec.model_dump_json()  # the lab file names where the secret is, not the secret


BAD = [
    # (lab file text, line, fragment of the message)
    (("name: r\nbackend: static\nknown_hosts: kh\nnetworks: {pool: {subnet: 10.9.0.0/24}}\nhosts:\n  h1:\n"
     "    ssh: {host: 10.9.0.1, key_file: k}\n    address: 10.9.0.1\n    ipmi: {address: 10.8.0.1, user: A, "
     f"password: {SECRET}}}\nservices: null\n"), 9, "never written in a lab file"),
    (("name: r\nbackend: static\nknown_hosts: kh\nnetworks: {pool: {subnet: 10.9.0.0/24}}\nhosts:\n  h1:\n"
     "    ssh: {host: 10.9.0.1, key_file: k}\n    address: 10.9.0.1\n    image: debian-xen\nservices: null\n"),
     9, "hosts.h1.image: xenlab does not boot the hosts of a static lab"),
    (("name: r\nbackend: static\nknown_hosts: kh\nnetworks: {pool: {subnet: 10.9.0.0/24}}\nhosts:\n  h1:\n"
     "    ssh: {host: 10.9.0.1, key_file: k}\n    address: 10.7.0.1\nservices: null\n"),
     8, "10.7.0.1 is not in the pool network 10.9.0.0/24"),
    (("name: r\nbackend: static\nnetworks: {pool: {subnet: 10.9.0.0/24}}\nhosts:\n  h1:\n"
     "    ssh: {host: 10.9.0.1, key_file: k}\n    address: 10.9.0.1\nservices: null\n"),
     1, "needs `known_hosts:`"),
    (("name: r\nbackend: static\nknown_hosts: kh\nnetworks: {pool: {subnet: 10.9.0.0/24}}\nhosts:\n  h1:\n"
     "    address: 10.9.0.1\nservices: null\n"), 6, "a static host needs `ssh:`"),
    (("name: r\nbackend: static\nknown_hosts: kh\nnetworks: {pool: {subnet: 10.9.0.0/24}}\nhosts:\n  h1:\n"
     "    ssh: {host: 10.9.0.1, key_file: k}\n    address: 10.9.0.1\nservices: null\n"),
     1, "toolstack xl needs a `services:` node"),
    (("name: r\nbackend: static\nknown_hosts: kh\naccel: tcg\nnetworks: {pool: {subnet: 10.9.0.0/24}}\nhosts:\n"
     "  h1:\n    ssh: {host: 10.9.0.1, key_file: k}\n    address: 10.9.0.1\nservices: null\n"),
     4, "accel: xenlab does not boot"),
    ("name: r\nhosts:\n  h1:\n    ssh: {host: 10.9.0.1, key_file: k}\n", 4,
     "only the hosts of a `backend: static` lab are reached by address"),
    (("name: r\nbackend: static\nknown_hosts: kh\nnetworks: {pool: {subnet: 10.9.0.0/24}}\nhosts:\n  h1:\n"
     "    ssh: {host: 10.9.0.1, key_file: k}\n    address: 10.9.0.1\n    ipmi: {address: 10.8.0.1, user: A, "
     "password_file: f, password_env: X}\nservices: null\n"), 9, "password_file or password_env, not both"),
    ("name: r\nbackend: sim\nbmc: ipmi\nhosts:\n  h1:\n", 3, "virtual BMCs are for qemu labs"),
]


@pytest.mark.parametrize(("text", "line", "fragment"), BAD, ids=[b[2][:40] for b in BAD])
def test_bad_static_lab_files_are_refused_with_their_line(tmp_path, text, line, fragment):
    path = tmp_path / "lab.yaml"
    path.write_text(text)
    with pytest.raises(SpecError) as info:
        load_lab(path)
    assert (line, fragment) in [(ln, fragment) for ln, msg in info.value.problems if fragment in msg], \
        info.value.problems
    assert SECRET not in str(info.value)


def test_files_and_variables_a_static_lab_names_must_exist(tmp_path):
    path = write_lab(tmp_path, "", ipmi_h2="{address: 127.0.0.1, port: 6232, user: ADMIN, password_env: XENLAB_T_PW}")
    os.environ.pop("XENLAB_T_PW", None)
    with pytest.raises(SpecError) as info:
        load_lab(path)
    assert info.value.problems == [(14, "hosts.h2.ipmi.password_env: the environment variable XENLAB_T_PW is not set")]
    (tmp_path / "known_hosts").unlink()
    os.environ["XENLAB_T_PW"] = SECRET
    try:
        with pytest.raises(SpecError) as info:
            load_lab(path)
    finally:
        del os.environ["XENLAB_T_PW"]
    [(line, message)] = info.value.problems
    assert line == 3 and "known_hosts file known_hosts does not exist" in message and SECRET not in message


def test_a_bad_static_file_through_the_cli_says_where_and_never_the_secret(tmp_path):
    path = tmp_path / "lab.yaml"
    path.write_text(BAD[0][0])
    out = subprocess.run([sys.executable, "-m", "xenlab.cli", "validate", str(path)], capture_output=True, text=True,
                         timeout=60, check=False)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert f"{path}:9:" in out.stdout + out.stderr
    assert SECRET not in out.stdout + out.stderr


def test_what_a_static_lab_can_and_cannot_do(tmp_path):
    lab = make_lab(load_lab(write_lab(tmp_path, "")), str(tmp_path / "rack.yaml"))
    assert isinstance(lab, StaticLab)
    caps = lab.capabilities
    assert caps.toolstack == "xl" and not caps.checkpoints and not caps.services_faults
    assert caps.fault_kinds == ("power_cut", "reset", "partition", "storage_loss")
    assert lab.checkpoint_tags() == []
    with pytest.raises(XenlabError, match="checkpoints is not supported on static lab rack"):
        lab.checkpoint_save("ready")
    drivers = drivers_for(lab)
    assert isinstance(drivers.toolstack, XlToolstack) and isinstance(drivers.faults, StaticFaults)
    status = json.dumps(lab.status())
    assert SECRET not in status and "6231" in status
    no_bmc = make_lab(load_lab(write_lab(tmp_path, "", ipmi_h2="null")), str(tmp_path / "rack.yaml"))
    assert no_bmc.capabilities.fault_kinds == ("partition", "storage_loss")


def test_scenarios_asking_for_what_a_static_lab_cannot_do_are_refused_before_anything_starts(tmp_path):
    lab = make_lab(load_lab(write_lab(tmp_path, "", ipmi_h2="null")), str(tmp_path / "rack.yaml"))
    failover = load_scenario(REPO / "scenarios" / "host-failover.yaml")
    problems = fit(failover, lab)
    assert problems and all(line is not None for line, _ in problems)
    assert any("fault power_cut is not offered by static lab rack" in msg for _, msg in problems)
    scenario = tmp_path / "cp.yaml"
    scenario.write_text("name: cp\nsteps:\n  - form_pool: {members: [h1, h2]}\n  - checkpoint: {save: s1}\n"
                        "  - fault: {name: cut, kind: link_down, target: h1}\n")
    found = fit(load_scenario(scenario), lab)
    assert (4, "checkpoints are not supported on static lab rack") in found
    assert any(line == 5 and "fault link_down is not offered" in msg for line, msg in found)
    full = make_lab(load_lab(write_lab(tmp_path, "")), str(tmp_path / "rack.yaml"))
    assert fit(failover, full) == []
    assert fit(load_scenario(REPO / "scenarios" / "pool-formation.yaml"), full) == []
    # storage loss names the services node; a static lab inflicts it in the hosts' firewalls
    assert fit(load_scenario(REPO / "scenarios" / "storage-loss.yaml"), full) == []
    cut_services = tmp_path / "cut-services.yaml"
    cut_services.write_text("name: cs\nsteps:\n  - fault: {name: x, kind: partition, target: services}\n")
    assert fit(load_scenario(cut_services), full) == [
        (3, "static lab rack cannot inflict faults on its services node services")]


def test_host_keys_come_from_known_hosts_plain_or_hashed(tmp_path):
    key = generate_keypair(tmp_path / "k", "x").public_line.split()[:2]
    plain = tmp_path / "plain"
    plain.write_text(f"192.0.2.7 {' '.join(key)}\n[192.0.2.8]:2222 {' '.join(key)}\n")
    assert known_host_key(plain, "192.0.2.7", 22) == " ".join(key)
    assert known_host_key(plain, "192.0.2.8", 2222) == " ".join(key)
    with pytest.raises(XenlabError, match="has no key for 192.0.2.9"):
        known_host_key(plain, "192.0.2.9", 22)
    if shutil.which("ssh-keygen"):
        hashed = tmp_path / "hashed"
        hashed.write_text(plain.read_text())
        subprocess.run(["ssh-keygen", "-H", "-f", str(hashed)], capture_output=True, check=True)
        assert "192.0.2.7" not in hashed.read_text()
        assert known_host_key(hashed, "192.0.2.7", 22) == " ".join(key)


@pytest.mark.skipif(shutil.which("ipmitool") is None, reason="ipmitool is not installed (./setup.sh)")
def test_power_faults_on_a_static_host_go_through_its_bmc(tmp_path):
    """h1's BMC is a real virtual BMC (its "machine" a process); the password reaches it
    from the file the lab file names, and shows up in no state, log or message."""
    run = tmp_path / "bmcrun"
    run.mkdir(mode=0o700)
    machine = [sys.executable, "-c", "import time; time.sleep(600)", str(run / "machine-h1")]
    endpoint, handle = start_bmc(run, "h1", tied=True, command=machine)
    try:
        creds = read_credentials(credentials_path(run))
        (tmp_path / "bmc-password").write_text(creds.password + "\n")
        path = write_lab(tmp_path, "")
        path.write_text(path.read_text().replace("port: 6231, user: ADMIN", f"port: {endpoint.port}, user: {creds.user}")
                        .replace(SECRET, creds.password))
        (tmp_path / "bmc-password").write_text(creds.password + "\n")
        lab = make_lab(load_lab(path), str(path))
        h1 = lab.host("h1")

        def machines() -> list[int]:
            return [p for p in owned_pids(str(run) + "/") if "machine-h1" in (cmdline(p) or "")
                    and "xenlab.lab.bmc" not in (cmdline(p) or "")]

        assert h1.process_alive() and len(machines()) == 1
        first = machines()
        fault = lab.faults().inject("reset", "h1")
        assert not fault.undoable
        deadline = time.monotonic() + 10
        while machines() in ([], first) and time.monotonic() < deadline:
            time.sleep(0.05)  # the new machine process is exec'd just after the BMC answers
        assert len(machines()) == 1 and machines() != first
        cut = lab.faults().inject("power_cut", "h1")
        assert not h1.process_alive() and machines() == []
        probed = probe_host(h1)  # what `xenlab status` shows of it: its BMC says off, SSH is silent
        assert probed["power"] == "off" and probed["state"] == "off" and not probed["ssh_answers"]
        assert probed["ssh_error"] and creds.password not in json.dumps(probed)
        assert cut in lab.faults().active
        h1.power("on")  # (healing would also wait for SSH, which this host has none of)
        assert h1.process_alive()
        deadline = time.monotonic() + 10
        while len(machines()) != 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(machines()) == 1
        probed = probe_host(h1)  # powered, but no SSH: unreachable, not off
        assert probed["power"] == "on" and probed["state"] == "unreachable"
        cut.healed_at = 0.0  # it was powered back above
        log = (run / "logs" / "bmc-h1.log").read_text()
        assert "power off" in log and "power on" in log and creds.password not in log
        assert creds.password not in json.dumps(lab.status()) and creds.password not in repr(h1.bmc.target)
    finally:
        sweep(str(run) + "/")
        handle.wait(timeout=10)


needs_netns = pytest.mark.skipif(shutil.which("nft") is None or os.geteuid() != 0,
                                 reason="needs nft and root (rules are loaded in a throwaway network namespace)")


# Does a TCP connection to ADDRESS (a listener on it, in the same namespace) get through?
REACH = """
import socket, sys
server = socket.socket()
server.bind((sys.argv[1], 0))
server.listen(1)
client = socket.socket()
client.settimeout(1)
try:
    client.connect(server.getsockname())
except OSError:
    sys.exit(1)
"""


@needs_netns
def test_partition_rules_cut_the_pool_network_but_not_the_controller(tmp_path):
    """The partition ruleset loaded for real in a new network namespace: addresses of the
    pool subnet stop answering, the controller's address still does, and the undo leaves
    no xenlab table behind."""
    rules = firewall.partition_ruleset(ipaddress.IPv4Network("10.99.0.0/24"), "10.99.0.1", ["eth9"])
    (tmp_path / "rules.nft").write_text(rules)
    (tmp_path / "reach.py").write_text(REACH)
    reach = f"{sys.executable} {tmp_path / 'reach.py'}"
    script = f"""
set -e
ip link set lo up
ip addr add 10.99.0.1/32 dev lo
ip addr add 10.99.0.5/32 dev lo
{reach} 10.99.0.5 && echo before-ok
nft -f {tmp_path / 'rules.nft'}
nft list tables
{reach} 10.99.0.5 && echo during-pool-ok || echo during-pool-cut
{reach} 10.99.0.1 && echo during-controller-ok || echo during-controller-cut
/bin/sh -c {firewall.shlex.quote(firewall.undo_script("partition"))} && echo undone
nft list tables | grep -c {firewall.PREFIX} || true
{reach} 10.99.0.5 && echo after-ok
"""
    out = subprocess.run(["unshare", "-n", "sh", "-c", script], capture_output=True, text=True, timeout=60, check=False)
    lines = out.stdout.split()
    assert out.returncode == 0, out.stderr
    assert lines[0] == "before-ok"
    assert "table inet xenlab_partition" in out.stdout and "table bridge xenlab_partition" in out.stdout
    assert "during-pool-cut" in lines and "during-controller-ok" in lines
    assert "undone" in lines and lines[-2] == "0" and lines[-1] == "after-ok"


@needs_netns
def test_storage_and_partition_rules_live_side_by_side_and_undo_separately(tmp_path):
    (tmp_path / "storage.nft").write_text(firewall.storage_ruleset("10.99.0.2"))
    (tmp_path / "partition.nft").write_text(
        firewall.partition_ruleset(ipaddress.IPv4Network("10.99.0.0/24"), None, []))
    quote = firewall.shlex.quote
    script = (f"nft -f {tmp_path / 'storage.nft'} && nft -f {tmp_path / 'partition.nft'} && "
              "nft list ruleset | grep -c 10.99.0.2; nft list tables | wc -l; "
              f"/bin/sh -c {quote(firewall.undo_script('storage'))} && nft list tables; "
              f"/bin/sh -c {quote(firewall.undo_script('partition'))} && nft list tables | wc -l")
    out = subprocess.run(["unshare", "-n", "sh", "-c", script], capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["2", "2", "table", "inet", "xenlab_partition", "0"]


def test_a_static_labs_run_directory_is_not_a_stray_of_down_all(tmp_path, monkeypatch):
    from xenlab.lab.lab import stray_lab_dirs

    monkeypatch.setenv("XENLAB_RUN_DIR", str(tmp_path / "runs"))
    lab = make_lab(load_lab(write_lab(tmp_path, "")), str(tmp_path / "rack.yaml"))
    lab.run.create()
    (tmp_path / "runs" / "crashed").mkdir()
    assert stray_lab_dirs() == [tmp_path / "runs" / "crashed"]
    lab.down()  # nothing inflicted: it only forgets its keys
    assert not lab.run.root.exists()


def test_a_static_lab_stops_what_its_drivers_started_when_it_goes_down(tmp_path, monkeypatch):
    """The heartbeat collector on a static lab's services node (a real machine on a real
    network) must not outlive the run: the xl driver registers its stop with `on_down`."""
    monkeypatch.setenv("XENLAB_RUN_DIR", str(tmp_path / "runs"))
    lab = make_lab(load_lab(write_lab(tmp_path, "")), str(tmp_path / "rack.yaml"))
    lab.run.create()
    stopped: list[str] = []
    lab.on_down("heartbeat collector", lambda: stopped.append("first"))
    lab.on_down("heartbeat collector", lambda: stopped.append("collector"))  # once per kind: the last
    lab.down()
    assert stopped == ["collector"]
    lab.run.create()
    lab.down()  # a second run of the lab: nothing left to stop
    assert stopped == ["collector"]
