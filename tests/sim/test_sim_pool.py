"""Pool formation, slaves, master changes and shared storage."""

from __future__ import annotations

import XenAPI
from sim_helpers import PW, connect, failure, host_ref, make_nfs_sr, make_vm


def test_each_host_starts_as_its_own_master(sim):
    for i in range(3):
        x = connect(sim, i).xenapi
        (p,) = x.pool.get_all()
        (h,) = x.host.get_all()
        assert x.pool.get_master(p) == h
        assert x.host.get_address(h) == f"10.0.0.{i + 1}"
        (pbd,) = x.host.get_PBDs(h)
        assert x.SR.get_shared(x.PBD.get_SR(pbd)) is False


def test_three_hosts_form_one_pool(pool):
    _sim, x = pool
    records = x.pool.get_all_records()
    assert len(records) == 1
    (prec,) = records.values()
    assert prec["master"] == host_ref(x, "h1")
    hosts = x.host.get_all_records()
    assert sorted(h["name_label"] for h in hosts.values()) == ["h1", "h2", "h3"]
    # every host's management PIF sits on the one pool-wide network
    nets = {x.PIF.get_network(pif) for h in hosts.values() for pif in h["PIFs"]}
    assert len(nets) == 1 and len(x.network.get_PIFs(nets.pop())) == 3
    # control domains moved with their hosts, resident where they belong
    for ref, h in hosts.items():
        assert x.VM.get_resident_on(h["control_domain"]) == ref
        assert x.host_metrics.get_live(h["metrics"]) is True


def test_login_on_slave_gets_host_is_slave(pool):
    sim, _x = pool
    s = XenAPI.Session(sim.url_for(2))
    assert failure(s.xenapi.login_with_password, "root", PW) == ["HOST_IS_SLAVE", "10.0.0.1"]


def test_stale_session_on_new_slave_relogs_and_hits_host_is_slave(sim):
    s2 = connect(sim, 1)
    s2.xenapi.pool.join("10.0.0.1", "root", PW)
    # the old session died with h2's database; the client re-logs in and is told where the master is
    assert failure(s2.xenapi.VM.get_all) == ["HOST_IS_SLAVE", "10.0.0.1"]


def test_join_errors(sim):
    x2 = connect(sim, 1).xenapi
    assert failure(x2.pool.join, "10.0.0.1", "root", "nope") == [
        "SESSION_AUTHENTICATION_FAILED",
        "root",
        "Authentication failure",
    ]
    assert failure(x2.pool.join, "10.0.0.2", "root", PW) == [
        "OPERATION_NOT_ALLOWED",
        "Host cannot become slave of itself",
    ]
    assert failure(x2.pool.join, "10.9.9.9", "root", PW) == ["JOINING_HOST_CONNECTION_FAILED"]
    # a host with a shared SR may not join
    make_nfs_sr(x2)
    assert failure(x2.pool.join, "10.0.0.1", "root", PW) == ["JOINING_HOST_CANNOT_CONTAIN_SHARED_SRS"]
    # a master of other hosts may not join another pool
    connect(sim, 2).xenapi.pool.join("10.0.0.1", "root", PW)
    x1 = connect(sim, 0).xenapi
    x3b = connect(sim, 1).xenapi  # h2 is still standalone
    assert failure(x1.pool.join, "10.0.0.2", "root", PW) == ["JOINING_HOST_CANNOT_BE_MASTER_OF_OTHER_HOSTS"]
    # joining through a slave is refused by the slave itself
    assert failure(x3b.pool.join, "10.0.0.3", "root", PW) == ["HOST_IS_SLAVE", "10.0.0.1"]


def test_join_refused_with_running_vm(sim):
    x2 = connect(sim, 1).xenapi
    vm = make_vm(x2, "busy")
    x2.VM.start(vm, False, False)
    assert failure(x2.pool.join, "10.0.0.1", "root", PW) == ["JOINING_HOST_CANNOT_HAVE_RUNNING_VMS"]


def test_nfs_sr_is_shared_with_pbds_on_every_host(pool):
    _sim, x = pool
    sr = make_nfs_sr(x)
    rec = x.SR.get_record(sr)
    assert rec["shared"] is True and rec["type"] == "nfs" and rec["content_type"] == "user"
    pbds = [x.PBD.get_record(p) for p in rec["PBDs"]]
    assert sorted(x.host.get_name_label(p["host"]) for p in pbds) == ["h1", "h2", "h3"]
    assert all(p["currently_attached"] for p in pbds)
    assert all(p["device_config"] == {"server": "nfs.lab.example", "serverpath": "/export/xen"} for p in pbds)
    for h in x.host.get_all():
        assert any(x.PBD.get_SR(p) == sr for p in x.host.get_PBDs(h))


def test_nfs_sr_requires_server(pool):
    _sim, x = pool
    master = host_ref(x, "h1")
    d = failure(x.SR.create, master, {"serverpath": "/x"}, "0", "n", "", "nfs", "user", True, {})
    assert d[0] == "SR_BACKEND_FAILURE_102"
    assert failure(x.SR.create, master, {}, "0", "n", "", "frobfs", "user", True, {}) == ["SR_UNKNOWN_DRIVER", "frobfs"]


def test_designate_new_master_and_eject(pool):
    sim, x = pool
    h2, h3 = host_ref(x, "h2"), host_ref(x, "h3")
    x.pool.designate_new_master(h2)
    # the old master is now a slave
    assert failure(XenAPI.Session(sim.url_for(0)).xenapi.login_with_password, "root", PW) == [
        "HOST_IS_SLAVE",
        "10.0.0.2",
    ]
    x2 = connect(sim, 1).xenapi
    assert x2.pool.get_master(x2.pool.get_all()[0]) == h2
    x2.pool.eject(h3)
    assert sorted(x2.host.get_name_label(h) for h in x2.host.get_all()) == ["h1", "h2"]
    # the ejected host comes back as a standalone master of a fresh pool
    x3 = connect(sim, 2).xenapi
    (p3,) = x3.pool.get_all()
    assert x3.host.get_name_label(x3.pool.get_master(p3)) == "h3"
    assert failure(x2.pool.eject, h2) == ["INTERNAL_ERROR", "Xapi_pool.Cannot_eject_master"]
