"""A warm lab: the session's lab taken down and brought up again from its warm state.

Runs first (see conftest): every later module then works on the restored lab, so the
pool, live migration and fault tests also prove that a warm lab is a whole lab.
"""

from __future__ import annotations

import time

import pytest

from xenlab.images import ImageCache
from xenlab.lab.accel import AccelChoice
from xenlab.lab.contract import READY
from xenlab.lab.lab import Lab
from xenlab.lab.warm import WarmCache, warm_key
from xenlab.spec import LabSpec

pytestmark = pytest.mark.warm_first


def test_the_lab_comes_back_warm_and_works_like_a_booted_one(pool2: Lab):
    first = pool2.state.came_up
    assert pool2.state.warm_key, "bring-up kept no warm state"
    before = {h.name: h.succeed("cat /etc/ssh/ssh_host_ed25519_key.pub").split()[1] for h in pool2.machines.values()}
    pool2.down()
    started = time.monotonic()
    stages = pool2.up(accel="tcg", tied=True, timeout=300)
    seconds = time.monotonic() - started
    assert pool2.state.came_up == "warm", f"came up {pool2.state.came_up} although a warm state was kept"
    assert pool2.checkpoint_tags() == [READY]
    # the same machines: their identity, each host's toolstack and Xen's capabilities
    for host in pool2.machines.values():
        assert host.succeed("cat /etc/ssh/ssh_host_ed25519_key.pub").split()[1] == before[host.name]
        assert set(stages[host.name]) == {"restore", "ssh", "toolstack"}
    for host in pool2.hosts:
        assert "xen_version" in host.succeed("xl info")
        assert pool2.state.machines[host.name].virt_caps
    # clocks set; the lab network carries traffic between the hosts and to the NFS server
    for host in pool2.machines.values():
        assert abs(float(host.succeed("date +%s.%N")) - time.time()) < 5
    h1, h2, services = pool2.host("h1"), pool2.host("h2"), pool2.services
    assert services is not None
    h1.succeed(f"ping -c 2 -W 5 {h2.address()}", timeout=30)
    h2.succeed(f"ping -c 2 -W 5 {services.address()}", timeout=30)
    assert services.succeed("systemctl is-active nfs-server").strip() == "active"
    print(f"\nfirst bring-up of the session: {first}; warm bring-up: {seconds:.1f} s; "
          + "; ".join(f"{n}: " + ", ".join(f"{k} {v:.1f}s" for k, v in s.items()) for n, s in stages.items()))


def test_a_changed_lab_file_is_not_served_the_kept_state(pool2: Lab):
    images = ImageCache()
    built = {name: images.lookup(name) for name in {m.image for m in pool2.plan.machines}}
    choice = AccelChoice(pool2.state.accel, pool2.state.cpu, pool2.state.accel_reason)
    states = WarmCache()
    assert states.lookup(pool2.name, warm_key(pool2, choice, built)) is not None
    data = pool2.spec.model_dump()
    data["hosts"]["h2"]["memory_mib"] = pool2.spec.hosts["h2"].memory_mib + 512
    changed = Lab(LabSpec.model_validate(data), pool2.spec_path, pool2.run)
    assert states.lookup(changed.name, warm_key(changed, choice, built)) is None
