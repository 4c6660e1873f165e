"""End to end on the shared xen-pool2 lab: a pool (a Pacemaker cluster fencing through the
hosts' BMCs), a live migration of its protected guest by the cluster, measured by heartbeats,
a power-cut failover done and recorded by the cluster, and a healed partition. Tests run in
order; each builds on the last."""

from __future__ import annotations

import time

import pytest

from xenlab.faults import Faults
from xenlab.metrics import downtime_around
from xenlab.observe import LabObserver
from xenlab.toolstack.base import GuestSpec, PoolRefused, PoolSettings
from xenlab.toolstack.xl import POOL_KEY, POOL_KNOWN_HOSTS, XlToolstack
from xenlab.waiting import wait_for

pytestmark = pytest.mark.e2e

# 20 s: corosync token 9.1 s + consensus 10.9 s (toolstack/cluster.py), above the dom0 stalls under TCG
SETTINGS = PoolSettings(name="pool-a", detection_timeout_s=20, protected=("vm1",))


@pytest.fixture(scope="module")
def xl(pool2) -> XlToolstack:
    return XlToolstack(pool2)


@pytest.fixture(scope="module")
def observer(pool2) -> LabObserver:
    return LabObserver(pool2)


def test_a_host_without_the_guest_bridge_is_refused(pool2, xl):
    h2 = pool2.host("h2")
    h2.succeed("ip link set xenbr0 down && ip link set xenbr0 name xenbr9 && ip link set xenbr9 up")
    try:
        with pytest.raises(PoolRefused) as refused:
            xl.form_pool(["h1", "h2"], SETTINGS)
        assert refused.value.host == "h2"
        assert "no guest bridge xenbr0" in refused.value.reason
    finally:
        h2.succeed("ip link set xenbr9 down && ip link set xenbr9 name xenbr0 && ip link set xenbr0 up")
    assert xl.pool() is None, "a refused pool must not be recorded"


def test_pool_forms_on_the_shared_sr(pool2, xl):
    pool = xl.form_pool(["h1", "h2"], SETTINGS)
    assert (pool.master, pool.members) == ("h1", ("h1", "h2"))
    stored = xl.pool()
    assert stored == pool  # read back from pool.json on the shared SR
    for host in pool2.hosts:
        assert "nfs" in host.succeed("findmnt -n -o FSTYPE /srv/xenlab")
    # dom0-to-dom0 trust for xl migrate: the pool's own key and pinned host keys, root's own key untouched
    h1 = pool2.host("h1")
    assert h1.succeed(f"ssh -i {POOL_KEY} -o IdentitiesOnly=yes -o UserKnownHostsFile={POOL_KNOWN_HOSTS} "
                      f"-o StrictHostKeyChecking=yes -o BatchMode=yes {pool2.host('h2').address()} hostname"
                      ).strip() == "h2"
    assert h1.run("test -e /root/.ssh/id_ed25519").status != 0  # xenlab never writes the user's own key
    # the pool's cluster, as its own tools see it: both members, quorum, a fence device per host
    status = xl.cluster().status()
    assert sorted(status["online"]) == ["h1", "h2"] and status["quorate"] and "2Node" in status["flags"]
    # each member's fencer registers the devices that may run there (fence-h1 never runs on h1), as
    # the CIB reaches it: the union over the members, polled
    def registered() -> set[str]:
        return {d for h in ("h1", "h2") for d in pool2.host(h).succeed("stonith_admin --list-registered").split()}

    wait_for(lambda: {"fence-h1", "fence-h2"} <= registered(), "both fence devices registered", 120, 2.0,
             lambda: f"registered: {sorted(registered())}")


def test_live_migration_keeps_the_guest_and_its_data(pool2, xl, observer):
    info = xl.create_vm(GuestSpec("vm1", memory_mib=128), "h1")
    assert (info.host, info.state) == ("h1", "running")
    assert observer.first_heartbeat_after("vm1", time.time() - 5, timeout=120) is not None
    result = xl.migrate("vm1", "h2")
    assert result.ok, result.error
    assert xl.vm("vm1").host == "h2"
    window_end = result.started_at + result.duration_s
    series = observer.heartbeats_through("vm1", window_end, timeout=60, since=result.started_at - 30)
    stats = downtime_around(series, result.started_at, window_end)
    assert stats.downtime_s is not None, stats
    assert 0 < stats.downtime_s < result.duration_s
    report = observer.verify_disk("vm1")
    assert report.ok, report
    assert report.records > 0
    print(f"\nmigration h1->h2: {result.duration_s:.1f}s, downtime {stats.downtime_s:.2f}s, "
          f"{stats.heartbeats_lost} heartbeats lost, {report.records} disk records intact")


def test_power_cut_failover_restarts_the_protected_guest(pool2, xl, observer):
    assert xl.vm("vm1").host == "h2"
    faults = Faults(pool2)
    fault = faults.inject("power_cut", "h2")
    result = xl.recover("h2", fault_at=fault.started_at, observer=observer)
    assert result.ok, result.error
    assert result.restarted == {"vm1": "h1"}
    assert xl.vm("vm1").host == "h1" and xl.vm("vm1").state == "running"
    # every moment from the stack's own journal: membership change, then fencing by the survivor, then restart
    assert result.records and result.fenced_by == "h1" and "success" in result.fencing
    assert 0 < result.detected_after_s < result.fenced_after_s < result.started_after_s["vm1"]
    # the driver reports what it did; the guest's recovery is measured from what the guest says
    assert result.heartbeat_back_after_s == {} and result.integrity_ok == {}
    back = observer.first_heartbeat_after("vm1", fault.started_at + result.fenced_after_s, timeout=300)
    assert back is not None and back - fault.started_at > result.fenced_after_s
    assert observer.verify_disk("vm1").ok
    print(f"\nfailover: detected {result.detected_after_s:.1f}s, fenced {result.fenced_after_s:.1f}s, "
          f"heartbeat back {back - fault.started_at:.1f}s after the power cut")
    faults.heal_all()  # h2 boots again
    assert pool2.host("h2").run_state() == "running"


def test_partition_drops_traffic_without_carrier_loss_and_heals(pool2):
    h1, h2 = pool2.host("h1"), pool2.host("h2")
    faults = Faults(pool2)
    faults.inject("partition", "h2")
    try:
        assert h1.run(f"ping -c 3 -W 1 {h2.address()}", timeout=30).status != 0
        assert "LOWER_UP" in h2.succeed("ip link show eth1"), "a partition keeps the carrier"
        assert pool2.wire("h2", "lab").settings()["loss"].startswith("100")
    finally:
        assert faults.heal_all() == []
    h1.succeed(f"ping -c 3 -W 3 {h2.address()}", timeout=30)
