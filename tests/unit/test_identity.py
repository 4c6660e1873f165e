"""Per-machine identity: keys, network stanzas, and a real seed disk readable by the guest."""

import os
import shutil
import subprocess
from pathlib import Path

import paramiko
import pytest

from xenlab.images.identity import (
    exports_for,
    generate_keypair,
    hosts_file,
    network_files_for,
    network_ready_command,
    write_seed_disk,
)
from xenlab.plan import plan_lab
from xenlab.spec import load_lab, parse_lab

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture()
def plan():
    return plan_lab(parse_lab("name: alpha\nnetworks:\n  lab:\n  storage:\nhosts:\n  h1: {nics: [lab, storage]}\n  h2:\n"))


def test_generated_keys_are_openssh_ed25519_and_private(tmp_path):
    pair = generate_keypair(tmp_path / "k", "root@h1")
    assert (tmp_path / "k").stat().st_mode & 0o777 == 0o600
    key = paramiko.Ed25519Key.from_private_key_file(str(tmp_path / "k"))
    assert pair.public_line.startswith("ssh-ed25519 ") and pair.public_line.endswith(" root@h1")
    assert pair.public_line.split()[1] == key.get_base64()
    again = generate_keypair(tmp_path / "k", "root@h1")
    assert again.public_line == pair.public_line  # reused, not regenerated
    assert generate_keypair(tmp_path / "other", "x").public_line.split()[1] != key.get_base64()


def test_xen_host_bridges_its_first_nic_with_its_own_mac(plan):
    h1 = plan.machine("h1")
    files = network_files_for(h1)
    lab, storage = h1.nics
    assert sorted(files) == ["20-eth1.network", "20-eth2.network", "20-xenbr0.netdev", "21-xenbr0.network"]
    assert f"Kind=bridge\nMACAddress={lab.mac}" in files["20-xenbr0.netdev"]
    assert "Name=eth1\n\n[Network]\nBridge=xenbr0" in files["20-eth1.network"]
    assert f"Address={lab.address}" in files["21-xenbr0.network"]
    assert f"Name=eth2\n\n[Network]\nAddress={storage.address}" in files["20-eth2.network"]
    h2_netdev = network_files_for(plan.machine("h2"))["20-xenbr0.netdev"]
    assert f"MACAddress={plan.machine('h2').nics[0].mac}" in h2_netdev and lab.mac not in h2_netdev


def test_services_node_has_plain_addresses_and_exports(plan):
    svc = plan.services
    assert list(network_files_for(svc)) == ["20-eth1.network"]
    subnet = plan.networks[0].subnet
    assert exports_for(plan, svc, "/srv/x") == f"/srv/x {subnet}(rw,sync,no_root_squash,no_subtree_check)\n"


def test_hosts_file_names_every_machine(plan):
    text = hosts_file(plan)
    for m in plan.machines:
        assert f"{m.nics[0].address.ip} {m.name}" in text


def debugfs(disk, request: str) -> str:
    return subprocess.run(["debugfs", "-R", request, str(disk)], capture_output=True, text=True, check=False).stdout


def test_seed_disk_is_a_real_ext4_with_the_identity(tmp_path, plan):
    keys = tmp_path / "keys"
    keys.mkdir()
    client = generate_keypair(keys / "id", "xenlab")
    host_key = generate_keypair(keys / "host-h1", "root@h1")
    disk = write_seed_disk(tmp_path / "seed.img", plan, plan.machine("h1"), host_key, client)
    label = subprocess.run(["blkid", "-o", "value", "-s", "LABEL", str(disk)], capture_output=True, text=True,
                           check=False).stdout
    assert label.strip() == "XLSEED"
    overlay = "/root-overlay"
    assert debugfs(disk, f"cat {overlay}/etc/hostname") == "h1\n"
    assert debugfs(disk, f"cat {overlay}/root/.ssh/authorized_keys").strip() == client.public_line
    assert debugfs(disk, f"cat {overlay}/etc/ssh/ssh_host_ed25519_key.pub").strip() == host_key.public_line
    assert "20-xenbr0.netdev" in debugfs(disk, f"ls {overlay}/etc/systemd/network")
    # sshd refuses keys readable by others: modes must survive the trip
    assert "Mode:  0600" in debugfs(disk, f"stat {overlay}/etc/ssh/ssh_host_ed25519_key")
    assert "Mode:  0700" in debugfs(disk, f"stat {overlay}/root/.ssh")
    assert disk.stat().st_mode & 0o777 == 0o600


def test_services_seed_carries_exports_and_the_export_dir(tmp_path, plan):
    keys = tmp_path / "keys"
    keys.mkdir()
    disk = write_seed_disk(tmp_path / "seed.img", plan, plan.services, generate_keypair(keys / "h", "h"),
                           generate_keypair(keys / "c", "c"), "/srv/xenlab")
    assert "/srv/xenlab " in debugfs(disk, "cat /root-overlay/etc/exports.d/xenlab.exports")
    assert "xenlab" in debugfs(disk, "ls /root-overlay/srv")


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("unshare") is None,
                    reason="needs root for a throwaway network namespace")
@pytest.mark.parametrize("machine", ["h1", "services"])
def test_network_ready_command_passes_only_once_the_lab_nic_is_up_with_its_address(machine):
    """The readiness test is run for real in a throwaway network namespace laid out as the
    machine's networkd files lay it out: it fails while the lab NIC is down (networkd gave
    up on the bridge) and passes once it is an up port with the planned address."""
    plan = plan_lab(load_lab(REPO / "labs/xen-pool2.yaml"))
    target = next(m for m in plan.machines if m.name == machine)
    nic = target.nics[0]
    ready = network_ready_command(target)
    holder = "xenbr0" if target.role == "xen" else nic.device
    layout = (f"ip link add {nic.device} type veth peer name far && ip link set far up && "
              + (f"ip link add xenbr0 type bridge && ip link set {nic.device} master xenbr0 && ip link set xenbr0 up && "
                 if target.role == "xen" else "")
              + f"ip addr add {nic.address} dev {holder}")
    script = (f"{layout} && if {ready}; then echo early; fi; ip link set {nic.device} up && sleep 1 && "
              f"if {ready}; then echo ready; fi")
    out = subprocess.run(["unshare", "-n", "sh", "-c", script], capture_output=True, text=True, timeout=60, check=False)
    assert out.stdout.split() == ["ready"], out.stdout + out.stderr


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("unshare") is None,
                    reason="needs root for a throwaway network namespace")
@pytest.mark.parametrize("machine", ["h1", "services"])
def test_network_ready_command_refuses_an_up_nic_with_another_address(machine):
    """Up and carrying an address, but not the planned one (another lab's plan, a typo in a
    networkd file): not ready."""
    plan = plan_lab(load_lab(REPO / "labs/xen-pool2.yaml"))
    target = next(m for m in plan.machines if m.name == machine)
    nic = target.nics[0]
    holder = "xenbr0" if target.role == "xen" else nic.device
    layout = (f"ip link add {nic.device} type veth peer name far && ip link set far up && "
              + (f"ip link add xenbr0 type bridge && ip link set {nic.device} master xenbr0 && ip link set xenbr0 up && "
                 if target.role == "xen" else "")
              + f"ip addr add 10.99.0.7/24 dev {holder} && ip link set {nic.device} up && sleep 1")
    script = f"{layout} && if {network_ready_command(target)}; then echo ready; else echo waiting; fi"
    out = subprocess.run(["unshare", "-n", "sh", "-c", script], capture_output=True, text=True, timeout=60, check=False)
    assert out.stdout.split() == ["waiting"], out.stdout + out.stderr
