"""Faults, HA failover on the virtual clock, master election."""

from __future__ import annotations

import socket
from urllib.parse import urlparse

import pytest
import XenAPI
from sim_helpers import PW, GiB, connect, failure, host_ref, make_nfs_sr, make_vm


def refused(sim, i) -> bool:
    u = urlparse(sim.url_for(i))
    try:
        socket.create_connection((u.hostname, u.port), timeout=2).close()
    except ConnectionRefusedError:
        return True
    return False


def messages_named(x, name):
    return [m for m in x.message.get_all_records().values() if m["name"] == name]


def test_enable_ha_requires_shared_storage(pool):
    _sim, x = pool
    h1 = host_ref(x, "h1")
    local = next(x.PBD.get_SR(p) for p in x.host.get_PBDs(h1))
    assert failure(x.pool.enable_ha, [local], {}) == ["SR_HAS_NO_PBDS", local]
    assert failure(x.pool.enable_ha, [], {}) == ["CANNOT_CREATE_STATE_FILE"]
    sr = make_nfs_sr(x)
    x.pool.enable_ha([sr], {})
    p = x.pool.get_all()[0]
    assert x.pool.get_ha_enabled(p) is True
    (statefile,) = x.pool.get_ha_statefiles(p)
    assert x.VDI.get_SR(statefile) == sr
    assert failure(x.pool.enable_ha, [sr], {}) == ["HA_IS_ENABLED"]
    assert failure(x.pool.eject, host_ref(x, "h3")) == ["HA_IS_ENABLED"]
    x.pool.disable_ha()
    assert x.pool.get_ha_enabled(p) is False
    assert failure(x.pool.disable_ha) == ["HA_NOT_ENABLED"]


def test_ha_restart_priority_validation(pool):
    _sim, x = pool
    vm = make_vm(x, "p")
    for v in ("restart", "best-effort", ""):
        x.VM.set_ha_restart_priority(vm, v)
        assert x.VM.get_ha_restart_priority(vm) == v
    assert failure(x.VM.set_ha_restart_priority, vm, "always") == ["INVALID_VALUE", "ha_restart_priority", "always"]
    x.VM.set_ha_restart_priority(vm, "restart")
    assert x.VM.get_ha_always_run(vm) is False  # only set while running
    x.VM.start(vm, False, False)
    assert x.VM.get_ha_always_run(vm) is True


def test_killed_host_stops_answering(pool):
    sim, _x = pool
    assert not refused(sim, 1)
    s = XenAPI.Session(sim.url_for(1))
    sim.control.kill_host("h2")
    assert refused(sim, 1)
    with pytest.raises(ConnectionRefusedError):
        s.xenapi.login_with_password("root", PW)


def test_ha_failover_restarts_protected_vm(pool):
    sim, x = pool
    h2 = host_ref(x, "h2")
    sr = make_nfs_sr(x)
    vm = make_vm(x, "protected", 2 * GiB, sr=sr)
    plain = make_vm(x, "unprotected", 1 * GiB, sr=sr)
    x.VM.set_ha_restart_priority(vm, "restart")
    x.VM.start_on(vm, h2, False, False)
    x.VM.start_on(plain, h2, False, False)
    x.pool.enable_ha([sr], {})
    x.pool.set_ha_host_failures_to_tolerate(x.pool.get_all()[0], "1")
    h2_uuid = x.host.get_uuid(h2)
    sim.control.kill_host(1)
    sim.control.advance(59)  # HA timeout (60 s) not reached: nothing declared yet
    assert x.VM.get_resident_on(vm) == h2
    assert x.host_metrics.get_live(x.host.get_metrics(h2)) is True
    assert messages_named(x, "HA_HOST_FAILED") == []
    sim.control.advance(2)
    assert x.host_metrics.get_live(x.host.get_metrics(h2)) is False
    assert x.VM.get_power_state(vm) == "Running"
    assert x.VM.get_resident_on(vm) in {host_ref(x, "h1"), host_ref(x, "h3")}
    assert x.VM.get_power_state(plain) == "Halted"  # not protected: stays down
    (msg,) = messages_named(x, "HA_HOST_FAILED")
    assert msg["obj_uuid"] == h2_uuid and msg["cls"] == "Host" and msg["priority"] == "3"


def test_ha_restart_order_and_memory(pool):
    sim, x = pool
    h1, h2, h3 = (host_ref(x, n) for n in ("h1", "h2", "h3"))
    sr = make_nfs_sr(x)
    # survivors keep only ~4 GiB free each (16 GiB hosts, 4 GiB dom0)
    for h in (h1, h2):
        x.VM.start_on(make_vm(x, f"filler-{h[-4:]}", 8 * GiB, sr=sr), h, False, False)
    first = make_vm(x, "c-first", 3 * GiB, sr=sr)
    second = make_vm(x, "b-second", 3 * GiB, sr=sr)
    third = make_vm(x, "a-third", 2 * GiB, sr=sr)
    for vm, order in ((first, 1), (second, 2), (third, 3)):
        x.VM.set_ha_restart_priority(vm, "restart")
        x.VM.set_order(vm, str(order))
        x.VM.start_on(vm, h3, False, False)
    x.pool.enable_ha([sr], {"timeout": "30"})
    sim.control.kill_host("h3")
    sim.control.advance(31)
    assert x.VM.get_power_state(first) == "Running"
    assert x.VM.get_power_state(second) == "Running"
    assert {x.VM.get_resident_on(first), x.VM.get_resident_on(second)} == {h1, h2}
    assert x.VM.get_power_state(third) == "Halted"  # no memory left for the last in order
    (failed,) = messages_named(x, "HA_PROTECTED_VM_RESTART_FAILED")
    assert failed["obj_uuid"] == x.VM.get_uuid(third)


def test_master_reelection_after_master_death(pool):
    sim, x = pool
    sr = make_nfs_sr(x)
    x.pool.enable_ha([sr], {})
    h2 = host_ref(x, "h2")
    sim.control.kill_host("h1")
    assert refused(sim, 0)
    # before the timeout the slaves still follow the dead master
    assert failure(XenAPI.Session(sim.url_for(1)).xenapi.login_with_password, "root", PW) == [
        "HOST_IS_SLAVE",
        "10.0.0.1",
    ]
    sim.control.advance(61)
    x2 = connect(sim, 1).xenapi  # h2, lowest surviving index, is the new master
    p = x2.pool.get_all()[0]
    assert x2.pool.get_master(p) == h2
    assert x2.host_metrics.get_live(x2.host.get_metrics(host_ref(x2, "h1"))) is False
    assert failure(XenAPI.Session(sim.url_for(2)).xenapi.login_with_password, "root", PW) == [
        "HOST_IS_SLAVE",
        "10.0.0.2",
    ]
    (msg,) = messages_named(x2, "HA_HOST_FAILED")
    assert msg["obj_uuid"] == x2.host.get_uuid(host_ref(x2, "h1"))
    # the old master boots back as a slave of the new one
    sim.control.heal("h1")
    assert failure(XenAPI.Session(sim.url_for(0)).xenapi.login_with_password, "root", PW) == [
        "HOST_IS_SLAVE",
        "10.0.0.2",
    ]
    assert x2.host_metrics.get_live(x2.host.get_metrics(host_ref(x2, "h1"))) is True


def test_without_ha_vms_stay_running_on_dead_host(pool):
    sim, x = pool
    h3 = host_ref(x, "h3")
    vm = make_vm(x, "stuck")
    x.VM.set_ha_restart_priority(vm, "restart")
    x.VM.start_on(vm, h3, False, False)
    sim.control.kill_host("h3")
    sim.control.advance(120)
    # xapi without HA does not notice quickly, nor restart anything
    assert x.VM.get_power_state(vm) == "Running" and x.VM.get_resident_on(vm) == h3
    assert x.host_metrics.get_live(x.host.get_metrics(h3)) is True
    assert failure(x.VM.clean_shutdown, vm) == ["CANNOT_CONTACT_HOST", h3]
    sim.control.advance(600)  # host assumed dead after 10 minutes
    assert x.host_metrics.get_live(x.host.get_metrics(h3)) is False
    x.VM.power_state_reset(vm)
    assert x.VM.get_power_state(vm) == "Halted"


def test_isolated_host_is_fenced_then_heals(pool):
    sim, x = pool
    sr = make_nfs_sr(x)
    h3 = host_ref(x, "h3")
    vm = make_vm(x, "iso", sr=sr)
    x.VM.set_ha_restart_priority(vm, "restart")
    x.VM.start_on(vm, h3, False, False)
    x.pool.enable_ha([sr], {})
    sim.control.isolate_host("h3")
    # isolated but alive: it still answers its clients
    assert failure(XenAPI.Session(sim.url_for(2)).xenapi.login_with_password, "root", PW)[0] == "HOST_IS_SLAVE"
    sim.control.advance(61)
    assert refused(sim, 2)  # self-fenced
    assert x.VM.get_resident_on(vm) != h3 and x.VM.get_power_state(vm) == "Running"
    sim.control.heal("h3")
    assert not refused(sim, 2)
    assert x.host_metrics.get_live(x.host.get_metrics(h3)) is True
    assert x.host.get_enabled(h3) is True
