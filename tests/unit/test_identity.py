"""Per-machine identity: keys, network stanzas, and a real seed disk readable by the guest."""

import subprocess

import paramiko
import pytest

from xenlab.images.identity import exports_for, generate_keypair, hosts_file, interfaces_for, write_seed_disk
from xenlab.plan import plan_lab
from xenlab.spec import parse_lab


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
    text = interfaces_for(h1)
    lab, storage = h1.nics
    assert f"iface xenbr0 inet static\n    address {lab.address}" in text
    assert f"bridge_ports {lab.device}" in text and f"bridge_hw {lab.mac}" in text
    assert f"iface {storage.device} inet static\n    address {storage.address}" in text
    assert interfaces_for(plan.machine("h2")).count("bridge_hw") == 1
    assert "bridge_hw " + plan.machine("h2").nics[0].mac in interfaces_for(plan.machine("h2"))


def test_services_node_has_plain_addresses_and_exports(plan):
    svc = plan.services
    assert "xenbr0" not in interfaces_for(svc)
    subnet = plan.networks[0].subnet
    assert exports_for(plan, svc, "/srv/x") == f"/srv/x {subnet}(rw,sync,no_root_squash,no_subtree_check)\n"


def test_hosts_file_names_every_machine(plan):
    text = hosts_file(plan)
    for m in plan.machines:
        assert f"{m.nics[0].address.ip} {m.name}" in text


def test_seed_disk_is_a_real_ext4_with_the_identity(tmp_path, plan):
    keys = tmp_path / "keys"
    keys.mkdir()
    client = generate_keypair(keys / "id", "xenlab")
    host_key = generate_keypair(keys / "host-h1", "root@h1")
    disk = write_seed_disk(tmp_path / "seed.img", plan, plan.machine("h1"), host_key, client)
    label = subprocess.run(["blkid", "-o", "value", "-s", "LABEL", str(disk)], capture_output=True, text=True).stdout
    assert label.strip() == "XLSEED"
    listing = subprocess.run(["debugfs", "-R", "ls -l /", str(disk)], capture_output=True, text=True).stdout
    for name in ("hostname", "hosts", "authorized_keys", "ssh_host_ed25519_key", "ssh_host_ed25519_key.pub", "interfaces"):
        assert name in listing
    hostname = subprocess.run(["debugfs", "-R", "cat /hostname", str(disk)], capture_output=True, text=True).stdout
    assert hostname == "h1\n"
    auth = subprocess.run(["debugfs", "-R", "cat /authorized_keys", str(disk)], capture_output=True, text=True).stdout
    assert auth.strip() == client.public_line
    assert disk.stat().st_mode & 0o777 == 0o600
