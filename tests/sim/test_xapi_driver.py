"""The XAPI driver against the simulator, through the real XenAPI client over HTTP on 127.0.0.1.

The simulator runs on its virtual clock with Async tasks finishing at once; where time
must pass (HA timeouts), the test advances the clock while the driver waits on event.from.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.request

import pytest
from sim_helpers import HOST_MEM, PW, connect, host_ref

from xenlab.errors import XenlabError
from xenlab.metrics import downtime_around
from xenlab.sim.server import TOKEN_HEADER, SimServer
from xenlab.toolstack.base import GuestSpec, PoolRefused, PoolSettings
from xenlab.toolstack.xapi import NoMaster, XapiAccess, XapiToolstack

NFS = ("nfs.lab.example", "/srv/xenlab")
HA_TIMEOUT = 30


@pytest.fixture
def sim():
    with SimServer(3, password=PW, host_memory=HOST_MEM, async_instant=True) as s:
        yield s


def driver(sim, master: str | None = None) -> XapiToolstack:
    access = XapiAccess({h.name: h.address for h in sim.deployment.hosts}, sim.url_for, "root", PW, *NFS)
    return XapiToolstack(access, master=master)


@pytest.fixture
def pool(sim):
    """h1, h2, h3 formed into a pool that protects vm1 (so HA is on)."""
    ts = driver(sim)
    ts.form_pool(["h1", "h2", "h3"], PoolSettings(name="lab", detection_timeout_s=HA_TIMEOUT, protected=("vm1",)))
    return sim, ts


def advancing(sim, call, seconds: float, step: float = 1.0):
    """Run `call` in a thread while the virtual clock moves `seconds` forward; its result."""
    out: dict = {}
    thread = threading.Thread(target=lambda: out.update(value=call()), daemon=True)
    thread.start()
    moved = 0.0
    while thread.is_alive() and moved < seconds:
        time.sleep(0.02)
        sim.control.advance(step)
        moved += step
    thread.join(20)
    assert not thread.is_alive(), "the driver was still waiting after the clock moved"
    assert "value" in out, "the call raised (see the thread's traceback)"
    return out["value"]


# -- sessions ---------------------------------------------------------------------------
def test_login_on_a_member_follows_host_is_slave_to_the_master(pool):
    sim, _ = pool
    ts = driver(sim, master="h3")  # h3 answers HOST_IS_SLAVE 10.0.0.1
    assert ts.pool().master == "h1" and ts.master_name == "h1"


def test_the_driver_follows_a_new_master(pool):
    sim, ts = pool
    ts.disable_ha()  # xapi refuses to move the master while HA is on
    ts.designate_master("h2")
    assert ts.pool().master == "h2" and ts.master_name == "h2"
    assert [v.name for v in ts.vms()] == []
    other = driver(sim)  # a driver that still believes in h1 is sent on by HOST_IS_SLAVE
    assert other.pool().master == "h2" and other.master_name == "h2"


def test_the_driver_logs_in_again_after_xapi_comes_back(pool):
    sim, ts = pool
    ts.disable_ha()
    assert ts.pool().members == ("h1", "h2", "h3")
    sim.control.kill_host("h1")
    with pytest.raises(NoMaster, match="no pool master answers"):
        ts.pool()
    sim.control.heal("h1")
    assert ts.pool().master == "h1"


def test_host_alive_is_whether_its_xapi_answers(pool):
    sim, ts = pool
    assert all(ts.host_alive(h) for h in ("h1", "h2", "h3"))
    sim.control.kill_host("h3")
    assert not ts.host_alive("h3") and ts.host_alive("h2")


# -- the pool ---------------------------------------------------------------------------
def test_form_pool_joins_members_and_shares_an_nfs_sr(pool):
    sim, ts = pool
    info = ts.pool()
    assert (info.name, info.master, info.members) == ("lab", "h1", ("h1", "h2", "h3"))
    assert info.settings.protected == ("vm1",) and info.settings.detection_timeout_s == HA_TIMEOUT
    x = connect(sim).xenapi
    p = x.pool.get_all()[0]
    sr = x.pool.get_default_SR(p)
    assert (x.SR.get_type(sr), x.SR.get_shared(sr)) == ("nfs", True)
    assert info.sr_path == f"/run/sr-mount/{x.SR.get_uuid(sr)}"
    configs = [x.PBD.get_device_config(pbd) for pbd in x.SR.get_PBDs(sr)]
    assert configs == [{"server": NFS[0], "serverpath": NFS[1]}] * 3
    assert x.pool.get_ha_enabled(p) is True and x.pool.get_ha_configuration(p) == {"timeout": "30"}
    assert ts.form_pool(["h1", "h2", "h3"], info.settings).members == info.members  # again: nothing changes
    assert len([r for r, rec in x.SR.get_all_records().items() if rec["type"] == "nfs"]) == 1


def test_a_pool_without_protected_guests_has_no_ha(sim):
    ts = driver(sim)
    assert ts.pool() is None
    ts.form_pool(["h1", "h2"], PoolSettings())
    assert ts.pool().members == ("h1", "h2") and not ts.ha_enabled()


@pytest.mark.parametrize("facts,words", [
    ({"cpu_vendor": "AuthenticAMD"}, "CPU vendor differ"),
    ({"cpu_features": "00000001-00000000-00000000-00000000"}, "CPU features differ"),
    ({"product_version": "8.2.1"}, "product version differs"),
])
def test_a_misfit_is_refused_with_the_xapi_reason(sim, facts, words):
    sim.control.configure_host("h3", **facts)
    ts = driver(sim)
    with pytest.raises(PoolRefused) as info:
        ts.form_pool(["h1", "h2", "h3"], PoolSettings())
    assert info.value.host == "h3" and words in info.value.reason
    x = connect(sim).xenapi
    assert sorted(x.host.get_name_label(h) for h in x.host.get_all()) == ["h1", "h2"]  # h2 joined before
    assert ts.form_pool(["h1", "h2"], PoolSettings()).members == ("h1", "h2")  # as the runner retries


def test_a_host_running_guests_is_refused(sim):
    driver(sim, master="h3").form_pool(["h3"], PoolSettings())  # h3 alone, with a guest of its own
    driver(sim, master="h3").create_vm(GuestSpec("stray"), "h3")
    with pytest.raises(PoolRefused, match="runs guests of its own"):
        driver(sim).form_pool(["h1", "h3"], PoolSettings())


def test_a_member_of_another_pool_cannot_be_made_master(pool):
    sim, _ = pool
    with pytest.raises(XenlabError, match="h2 is a member of the pool of h1"):
        driver(sim).form_pool(["h2", "h3"], PoolSettings())


def test_eject_returns_a_host_to_a_pool_of_its_own(pool):
    _, ts = pool
    ts.disable_ha()
    ts.eject("h3")
    assert ts.pool().members == ("h1", "h2")


# -- guests -----------------------------------------------------------------------------
def test_create_vm_puts_its_disk_on_the_shared_sr_and_protects_it_in_order(pool):
    sim, ts = pool
    info = ts.create_vm(GuestSpec("vm1", memory_mib=256, disk_mib=32), "h2")
    assert (info.name, info.host, info.state, info.memory_mib) == ("vm1", "h2", "running", 256)
    x = connect(sim).xenapi
    (vm,) = x.VM.get_by_name_label("vm1")
    (vbd,) = x.VM.get_VBDs(vm)
    vdi = x.VBD.get_VDI(vbd)
    assert x.VDI.get_SR(vdi) == x.pool.get_default_SR(x.pool.get_all()[0])
    assert int(x.VDI.get_virtual_size(vdi)) == 32 * 1024 * 1024
    (vif,) = x.VM.get_VIFs(vm)
    assert x.network.get_bridge(x.VIF.get_network(vif)) == "xenbr0"
    assert (x.VM.get_ha_restart_priority(vm), x.VM.get_order(vm)) == ("restart", "1")
    ts.create_vm(GuestSpec("vm2"), "h3")
    assert x.VM.get_ha_restart_priority(x.VM.get_by_name_label("vm2")[0]) == ""
    with pytest.raises(XenlabError, match="already exists"):
        ts.create_vm(GuestSpec("vm2"), "h1")


def test_shutdown_start_and_destroy(pool):
    sim, ts = pool
    ts.create_vm(GuestSpec("vm2"), "h1")
    ts.shutdown_vm("vm2")
    assert ts.vm("vm2").state == "halted" and ts.vms_on("h1") == []
    assert ts.start_vm("vm2", "h3").host == "h3"
    ts.destroy_vm("vm2")
    assert ts.vms() == []
    x = connect(sim).xenapi
    assert not [r for r, rec in x.VDI.get_all_records().items() if rec["name_label"] == "vm2 disk"]


def test_migrate_moves_the_guest_and_its_heartbeats_show_the_switch_over(pool):
    sim, ts = pool
    ts.create_vm(GuestSpec("vm2"), "h1")
    sim.control.advance(5)
    result = ts.migrate("vm2", "h3")
    assert (result.ok, result.source, result.destination) == (True, "h1", "h3")
    assert ts.vm("vm2").host == "h3"
    at = sim.control.now()
    sim.control.advance(5)
    stats = downtime_around(sim.control.heartbeats("vm2"), at, at)
    assert stats.downtime_s == pytest.approx(sim.deployment.guests.switchover_s + 0.01, abs=0.011)
    assert stats.heartbeats_lost == 0


def test_a_refused_migration_is_a_failed_result_with_the_xapi_error(pool):
    _, ts = pool
    ts.create_vm(GuestSpec("vm2"), "h1")
    ts.shutdown_vm("vm2")
    result = ts.migrate("vm2", "h2")
    assert not result.ok and result.error.startswith("VM_BAD_POWER_STATE")
    with pytest.raises(XenlabError, match="h9 is not a member of the pool of h1"):
        ts.migrate("vm2", "h9")


def test_evacuate_empties_the_host_through_host_evacuate(sim):
    ts = driver(sim)
    ts.form_pool(["h1", "h2", "h3"], PoolSettings())
    for name in ("a", "b", "c"):
        ts.create_vm(GuestSpec(name), "h1")
    results = ts.evacuate("h1")
    assert sorted(r.vm for r in results) == ["a", "b", "c"] and all(r.ok and r.source == "h1" for r in results)
    assert {r.destination for r in results} <= {"h2", "h3"}
    assert ts.vms_on("h1") == [] and {v.host for v in ts.vms()} == {r.destination for r in results}
    x = connect(sim).xenapi
    assert x.host.get_enabled(host_ref(x, "h1")) is True  # open for guests again


def test_evacuate_refused_by_xapi_reports_every_guest(pool):
    _, ts = pool
    ts.create_vm(GuestSpec("vm2"), "h1")  # unprotected: HA refuses to evacuate it
    (result,) = ts.evacuate("h1")
    assert not result.ok and "HOST_EVACUATE_VM_NOT_HA_PROTECTED" in result.error and result.destination == "h1"


# -- failure and failover -----------------------------------------------------------------
def test_ha_restarts_the_protected_guest_of_a_dead_member(pool):
    sim, ts = pool
    ts.create_vm(GuestSpec("vm1"), "h2")
    ts.create_vm(GuestSpec("vm2"), "h2")
    sim.control.advance(2)
    fault_at = sim.control.now()
    sim.control.kill_host("h2")
    result = advancing(sim, lambda: ts.recover("h2", fault_at=fault_at, observer=SimHeartbeats(sim)), 90)
    assert result.ok, result.error
    assert result.detected_after_s == pytest.approx(HA_TIMEOUT, abs=1.0)
    assert result.fenced_after_s == result.detected_after_s
    assert result.restarted["vm1"] in ("h1", "h3")
    assert result.heartbeat_back_after_s == {}  # the driver reports what HA did; the runner measures the guest
    restarted_heard = SimHeartbeats(sim).heartbeats("vm1", since=fault_at + HA_TIMEOUT)
    assert restarted_heard and min(t for _, t in restarted_heard) <= fault_at + HA_TIMEOUT + 5
    states = {v.name: (v.host, v.state) for v in ts.vms()}
    assert states["vm1"] == (result.restarted["vm1"], "running") and states["vm2"] == ("", "halted")
    x = connect(sim).xenapi
    failed = [m for m in x.message.get_all_records().values() if m["name"] == "HA_HOST_FAILED"]
    assert [m["obj_uuid"] for m in failed] == [x.host.get_uuid(host_ref(x, "h2"))]


def test_ha_failover_of_the_master_moves_the_driver_to_the_new_master(pool):
    sim, ts = pool
    ts.create_vm(GuestSpec("vm1"), "h1")
    fault_at = sim.control.now()
    sim.control.kill_host("h1")
    result = advancing(sim, lambda: ts.recover("h1", fault_at=fault_at), 90)
    assert result.ok, result.error
    assert result.restarted == {"vm1": "h2"} and ts.master_name == "h2"
    assert ts.pool().master == "h2" and ts.vm("vm1").host == "h2"


def test_recover_without_ha_says_nothing_restarts_guests(sim):
    ts = driver(sim)
    ts.form_pool(["h1", "h2"], PoolSettings())
    ts.create_vm(GuestSpec("vm1"), "h2")
    sim.control.kill_host("h2")
    result = ts.recover("h2", fault_at=sim.control.now())
    assert not result.ok and "HA is off" in result.error and result.restarted == {}


def test_guests_of_a_host_xapi_holds_dead_are_unknown(sim):
    ts = driver(sim)
    ts.form_pool(["h1", "h2"], PoolSettings())
    ts.create_vm(GuestSpec("vm1"), "h2")
    sim.control.kill_host("h2")
    assert ts.vm("vm1").state == "running"  # xapi has not noticed yet
    sim.control.advance(601)  # without HA the master gives up on a silent host after 10 minutes
    assert ts.vm("vm1").state == "unknown"


class SimHeartbeats:
    """The observer recover() may use: the simulator's modelled heartbeats."""

    def __init__(self, sim):
        self.sim = sim

    def heartbeats(self, vm: str, since: float | None = None):
        return self.sim.control.heartbeats(vm, since)


def test_modelled_heartbeats_stop_with_the_host_and_are_lost_while_it_is_cut_off(pool):
    sim, ts = pool
    ts.create_vm(GuestSpec("vm2"), "h2")
    ts.create_vm(GuestSpec("vm3"), "h3")
    sim.control.advance(2)
    cut_at = sim.control.now()
    sim.control.kill_host("h2")
    sim.control.isolate_host("h3")
    sim.control.advance(5)
    sim.control.heal("h3")
    sim.control.advance(1)
    assert max(t for _, t in sim.control.heartbeats("vm2")) < cut_at  # dead with its host
    stats = downtime_around(sim.control.heartbeats("vm3"), cut_at, cut_at + 5)
    assert stats.downtime_s == pytest.approx(5.01, abs=0.011) and stats.heartbeats_lost == 500
    request = urllib.request.Request(sim.control_url + "heartbeats", method="POST",
                                     data=json.dumps({"vm": "vm3", "since": cut_at + 5.5}).encode(),
                                     headers={TOKEN_HEADER: sim.control_token})
    with urllib.request.urlopen(request, timeout=10) as reply:
        beats = json.loads(reply.read())["result"]
    assert beats[0][1] == pytest.approx(cut_at + 5.5) and len(beats) == 51


def test_each_guest_type_is_created_as_xapi_records_it_and_migrates(pool):
    sim, ts = pool
    x = connect(sim).xenapi
    for guest_type, host in (("pv", "h1"), ("pvh", "h2"), ("hvm", "h3")):
        ts.create_vm(GuestSpec(f"g-{guest_type}", type=guest_type), host)
        (vm,) = x.VM.get_by_name_label(f"g-{guest_type}")
        assert x.VM.get_domain_type(vm) == guest_type
        assert x.VM.get_HVM_boot_policy(vm) == ("BIOS order" if guest_type == "hvm" else "")
        assert x.VM_metrics.get_current_domain_type(x.VM.get_metrics(vm)) == guest_type
    assert ts.migrate("g-pvh", "h1").ok and ts.vm("g-pvh").host == "h1"
