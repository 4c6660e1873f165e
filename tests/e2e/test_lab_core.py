"""End to end on real nested Xen hosts: labs/xen-pool2.yaml booted under TCG.

Order matters only for the last test, which tears the lab down and checks nothing is left.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest

from xenlab.errors import XenlabError

pytestmark = pytest.mark.e2e


def test_every_host_runs_xen_with_the_xl_toolstack(pool2):
    for host in pool2.hosts:
        info = host.succeed("xl info", timeout=60)
        fields = {k.strip(): v.strip() for k, v in (line.split(":", 1) for line in info.splitlines() if ":" in line)}
        assert fields["host"] == host.name
        assert (fields["xen_major"], fields["xen_minor"]) == ("4", "17")
        assert "pv" in fields["virt_caps"].split()
        # dom0 outweighs a guest 4:1 (xenlab-dom0-weight.service): `Domain-0   0   1024   0`
        [dom0] = [line.split() for line in host.succeed("xl sched-credit2 -d 0", timeout=60).splitlines()[1:]]
        assert dom0[:3] == ["Domain-0", "0", "1024"], dom0
    assert pool2.state.accel == "tcg" and pool2.state.cpu == "qemu64"  # a PV-only lab: no nested SVM
    status = pool2.status()
    for machine in status["machines"]:
        if machine["role"] == "xen":
            assert "pv" in machine["virt_caps"]  # read by the toolstack stage of the bring-up
            assert machine["guest_types"] == ["pv"] == list(pool2.capabilities.guest_types)


def test_services_node_serves_nfs(pool2):
    services = pool2.services
    assert services.succeed("systemctl is-active nfs-server").strip() == "active"
    assert "/srv/xenlab" in services.succeed("exportfs -v")


def test_clones_have_distinct_identities(pool2):
    seen = {}
    for host in pool2.machines.values():
        machine_id = host.succeed("cat /etc/machine-id").strip()
        host_key = host.succeed("cat /etc/ssh/ssh_host_ed25519_key.pub").split()[1]
        assert host.succeed("hostname").strip() == host.name
        assert machine_id == host.plan.machine_id
        seen[host.name] = (machine_id, host_key)
    assert len({v[0] for v in seen.values()}) == len(seen)
    assert len({v[1] for v in seen.values()}) == len(seen)
    macs = {h.name: h.succeed("cat /sys/class/net/xenbr0/address").strip() for h in pool2.hosts}
    assert macs == {h.name: h.plan.nics[0].mac for h in pool2.hosts}


def test_h1_reaches_h2_and_services_over_the_lab_network(pool2):
    h1, h2 = pool2.hosts
    out = h1.succeed(f"ping -c 3 -W 3 {h2.address()}")
    assert " 0% packet loss" in out
    assert h1.succeed("ip -4 -o addr show xenbr0").split()[3] == str(h1.plan.nics[0].address)
    h1.succeed("ping -c 1 -W 3 services")


def test_management_network_has_no_way_out(pool2):
    """restrict=on: SSH is forwarded in, but a host cannot open a connection out, not even
    to a server listening on this machine's loopback (which plain user-mode NAT allows)."""
    h1 = pool2.hosts[0]
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        listener.settimeout(0.5)
        result = h1.run(f"nc -z -w 3 10.0.2.2 {port}", timeout=20)
        with pytest.raises(TimeoutError):
            listener.accept()
    assert not result.ok


def test_link_down_cuts_the_lab_network_and_up_restores_it(pool2):
    h1, h2 = pool2.hosts
    h1.link("lab", False)
    try:
        assert h1.run(f"ping -c 2 -W 1 {h2.address()}", timeout=20).status != 0
        assert "NO-CARRIER" in h1.succeed("ip link show eth1")
    finally:
        h1.link("lab", True)
    h1.succeed(f"ping -c 3 -W 3 {h2.address()}", timeout=30)


def test_freeze_and_thaw(pool2):
    h2 = pool2.hosts[1]
    h2.power("freeze")
    try:
        assert h2.run_state() == "paused"
        with pytest.raises(XenlabError):  # a frozen host cannot answer: the command times out
            h2.run("true", timeout=5)
    finally:
        h2.power("thaw")
    assert h2.run_state() == "running"
    h2.succeed("true", timeout=30)


def test_checkpoint_restore_brings_back_the_saved_moment(pool2):
    h1 = pool2.hosts[0]
    h1.succeed("rm -f /root/after-checkpoint")
    seconds = pool2.checkpoint_save("moment")
    assert seconds > 0
    h1.succeed("touch /root/after-checkpoint")
    restored = pool2.checkpoint_restore("moment")
    assert restored > 0
    # the host answers again without a reboot, and the file written after the save is gone
    assert h1.run("test -e /root/after-checkpoint").status == 1
    uptime = float(h1.succeed("cut -d' ' -f1 /proc/uptime"))
    assert uptime > 30, "restore must not reboot the host"
    for host in pool2.hosts:
        host.succeed("xl info >/dev/null")
    assert [c.tag for c in pool2.state.checkpoints] == ["ready", "moment"]
    pool2.checkpoint_delete("moment")
    assert [c.tag for c in pool2.state.checkpoints] == ["ready"]


def test_cli_sees_the_same_lab(pool2):
    env = dict(os.environ)
    status = subprocess.run([sys.executable, "-m", "xenlab.cli", "status", "--json"], env=env,
                            capture_output=True, text=True, timeout=60, check=False)
    assert status.returncode == 0, status.stderr
    data = json.loads(status.stdout)
    assert data["schema"] == "xenlab.status/1" and data["lab"] == "xen-pool2"
    assert {m["name"]: m["state"] for m in data["machines"]} == {"h1": "running", "h2": "running", "services": "running"}
    ssh = subprocess.run([sys.executable, "-m", "xenlab.cli", "ssh", "h2", "hostname"], env=env,
                         capture_output=True, text=True, timeout=60, check=False)
    assert (ssh.returncode, ssh.stdout.strip()) == (0, "h2")
    failing = subprocess.run([sys.executable, "-m", "xenlab.cli", "ssh", "h2", "exit 3"], env=env,
                             capture_output=True, text=True, timeout=60, check=False)
    assert failing.returncode == 3
    console = subprocess.run([sys.executable, "-m", "xenlab.cli", "console", "h1", "-n", "400"], env=env,
                             capture_output=True, text=True, timeout=60, check=False)
    assert "Xen version 4.17" in console.stdout


def test_power_off_and_on_boots_the_host_again(pool2):
    h2 = pool2.hosts[1]
    booted_as = h2.succeed("cat /proc/sys/kernel/random/boot_id").strip()
    h2.power("off")
    assert h2.run_state() == "off"
    h2.power("on")
    stages = h2.wait_ready(timeout=300)
    assert set(stages) == {"boot", "ssh", "toolstack"}
    assert h2.succeed("cat /proc/sys/kernel/random/boot_id").strip() != booted_as  # a new boot, not a resume
