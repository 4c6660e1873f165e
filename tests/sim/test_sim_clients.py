"""A served simulator driven by the clients XCP-ng users run, over HTTP on 127.0.0.1.

Xen Orchestra's own `xen-api` (Node) through its whole connect-watch-act cycle on both
transports, and the XenAPI Python package, each against what xapi does: wall-clock
event.from timeouts, event.inject's token, system.listMethods, XML-RPC at /xmlrpc,
re-login on SESSION_INVALID, HOST_IS_SLAVE redirects, Async calls watched as tasks.
"""

from __future__ import annotations

import time
import xmlrpc.client

import pytest
import XenAPI
from clients import XOClient, timed, write_password_file, xo_missing
from sim_helpers import HOST_MEM, PW, connect, failure, host_ref, vm_record

from xenlab.sim import datamodel
from xenlab.sim.server import SimServer, form_pool


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A pool of 3 served as `xenlab sim serve --pool --loopback-addresses` serves it."""
    why = xo_missing()
    if why:
        pytest.fail(why)
    pwfile = write_password_file(tmp_path_factory.mktemp("sim") / "pw", PW)
    with SimServer(3, password=PW, realtime=True, time_scale=0.05, event_timeouts="wall",
                   loopback_addresses=True, host_memory=HOST_MEM) as sim:
        form_pool(sim, PW)
        yield sim, pwfile


@pytest.fixture(scope="module")
def xo(served):
    sim, pwfile = served
    with XOClient(sim.url_for(0), pwfile) as client:
        yield client


# -- Xen Orchestra ------------------------------------------------------------------------
@pytest.mark.parametrize("transport", ["json-rpc", "xml-rpc"])
def test_xo_connects_and_fills_its_cache(served, transport):
    sim, pwfile = served
    with XOClient(sim.url_for(0), pwfile, transport=transport) as client:
        ready = client.ready
        assert ready["status"] == "connected" and ready["sessions"] == 1
        assert ready["counts"]["host"] == 3 and ready["counts"]["pool"] == 1 and ready["counts"]["SR"] >= 1
        # its types come from system.listMethods; VMPP's get_all_records is removed in xapi and
        # answers MESSAGE_REMOVED, which XO ignores silently: any other answer makes it warn
        assert {"VM", "host", "pool", "task", "VMPP"} <= set(ready["types"])
        assert ready["warnings"] == []
        (pool,) = connect(sim).xenapi.pool.get_all()
        assert ready["poolRef"] == pool


def test_xo_cache_follows_every_change(served, xo):
    sim, _ = served
    x = connect(sim).xenapi
    (pool,) = x.pool.get_all()
    x.pool.set_name_label(pool, "renamed by XenAPI")
    assert xo("wait_pool_name", value="renamed by XenAPI")["seen"]
    vm = x.VM.create(vm_record("xo-watched"))
    assert xo("wait_vm", name="xo-watched")["ref"] == vm
    # an Async call from XO, followed through its task's events to the result
    assert xo("call_async", method="VM.start", args=[vm, False, False]) == {"result": ""}
    assert xo("wait_vm", name="xo-watched", field="power_state", value="Running")["power_state"] == "Running"
    assert x.VM.get_resident_on(vm) in x.host.get_all()
    x.VM.hard_shutdown(vm)
    x.VM.destroy(vm)
    assert xo("wait_vm", name="xo-watched", present=False) == {"gone": "xo-watched"}
    assert xo("barrier") == {"ok": True}  # XO's own round trip through pool.other_config events
    assert xo("status")["warnings"] == []


def test_xo_failed_async_call_rejects_with_the_xapi_error(served, xo):
    sim, _ = served
    x = connect(sim).xenapi
    vm = x.VM.create(vm_record("xo-too-big", memory=HOST_MEM * 2))
    answer = xo("call_async", method="VM.start", args=[vm, False, False])
    assert answer["error"] == "NO_HOSTS_AVAILABLE"  # what xapi answers when no member fits
    x.VM.destroy(vm)


def test_xo_event_inject_token_reports_the_touch_at_once(xo):
    pool = xo("status")["poolRef"]
    token = xo("call", method="event.inject", args=["pool", pool])["result"]
    answer = xo("timed_call", method="event.from", args=[["pool"], token, 5.0])
    assert answer["seconds"] < 2.0
    assert [(e["class"], e["operation"], e["ref"]) for e in answer["result"]["events"]] == [("pool", "mod", pool)]


def test_xo_idle_event_from_returns_after_its_timeout_in_wall_clock_time(xo):
    token = xo("call", method="event.from", args=[["pool"], "", 0.0])["result"]["token"]
    answer = xo("timed_call", method="event.from", args=[["pool"], token, 1.0])
    assert answer["result"]["events"] == []
    assert 0.9 <= answer["seconds"] < 5.0
    assert answer["result"]["valid_ref_counts"]["pool"] == 1 and answer["result"]["token"] >= token


def test_xo_logs_in_again_after_session_invalid(served, tmp_path):
    sim, pwfile = served
    with XOClient(sim.url_for(0), pwfile) as client:
        assert sim.control.drop_sessions() >= 1  # what a restarted xapi does to every session
        x = connect(sim).xenapi
        (pool,) = x.pool.get_all()
        x.pool.set_name_label(pool, "after the restart")
        assert client("wait_pool_name", value="after the restart", timeout=20)["seen"]
        status = client("status")
        assert status["sessions"] >= 2 and status["status"] == "connected"


def test_xo_follows_host_is_slave_to_the_master(served):
    sim, pwfile = served
    member = sim.url_for(1)
    assert member.startswith("http://127.0.0.2:")
    with XOClient(member, pwfile) as client:
        assert client.ready["hostname"] == "127.0.0.1"  # the master's address, same port
        assert client.ready["counts"]["host"] == 3


# -- XenAPI ------------------------------------------------------------------------------
def test_xenapi_idle_event_from_on_a_virtual_clock_elapses_in_wall_clock_time():
    """The served simulator's clock may be virtual; its event.from timeouts are not."""
    with SimServer(1, password=PW, event_timeouts="wall") as sim:
        s = connect(sim)
        x = s.xenapi
        token = x.event.inject("pool", x.pool.get_all()[0])
        assert x.event_from(["pool"], token, 1.0)["events"]
        token = x.event_from(["pool"], token, 0.0)["token"]
        result, seconds = timed(x.event_from, ["pool"], token, 1.0)
        assert result["events"] == [] and 0.9 <= seconds < 5.0
        x.event.register(["pool"])
        (pool,) = x.pool.get_all()
        x.pool.set_name_label(pool, "next")
        assert [e["operation"] for e in x.event.next()] == ["mod"]


def test_xenapi_event_inject_token(served):
    sim, _ = served
    x = connect(sim).xenapi
    (pool,) = x.pool.get_all()
    token = x.event.inject("pool", pool)
    result, seconds = timed(x.event_from, ["pool"], token, 5.0)
    assert [(e["operation"], e["ref"]) for e in result["events"]] == [("mod", pool)] and seconds < 2.0
    assert failure(x.event.inject, "VM", pool) == ["HANDLE_INVALID", "VM", pool]


def test_xenapi_list_methods_is_every_message_and_each_answers_as_xapi(served):
    sim, _ = served
    s = connect(sim)
    methods = s.system.listMethods()  # a bare array over XML-RPC, as xapi answers it
    dm = datamodel.get()
    assert methods == [m.wire_name for c in dm.classes.values() for m in c.messages.values()]
    assert "VMPP.get_all_records" in methods and "VM.start" in methods
    assert failure(s.xenapi.VMPP.get_all_records) == ["MESSAGE_REMOVED"]
    assert failure(s.xenapi.session.get_all_subject_identifiers) == ["NOT_IMPLEMENTED",
                                                                    "session.get_all_subject_identifiers"]
    assert failure(s.xenapi.VM.frobnicate) == ["MESSAGE_METHOD_UNKNOWN", "VM.frobnicate"]


@pytest.mark.parametrize("path", ["xmlrpc", "RPC2", "json", "anything/else"])
def test_xenapi_reaches_xml_rpc_at_every_path_xapi_routes_to_it(served, path):
    sim, _ = served
    s = XenAPI.Session(sim.url_for(0) + path)
    s.xenapi.login_with_password("root", PW, "2.21", "xenlab-tests")
    assert len(s.xenapi.host.get_all()) == 3
    raw = xmlrpc.client.ServerProxy(sim.url_for(0) + path).system.listMethods()
    assert isinstance(raw, list) and "pool.join" in raw


def test_xenapi_host_is_slave_names_the_masters_address(served):
    sim, _ = served
    s = XenAPI.Session(sim.url_for(2))
    err = failure(s.xenapi.login_with_password, "root", PW, "2.21", "xenlab-tests")
    assert err == ["HOST_IS_SLAVE", "127.0.0.1"]
    x = XenAPI.Session(sim.url_for(err[1])).xenapi
    x.login_with_password("root", PW, "2.21", "xenlab-tests")
    assert x.host.get_name_label(host_ref(x, "h3")) == "h3"


def test_xenapi_async_call_watched_through_task_events(served):
    sim, _ = served
    x = connect(sim).xenapi
    vm = x.VM.create(vm_record("async-watched"))
    token = x.event_from(["task"], "", 0.0)["token"]
    task = x.Async.VM.start(vm, False, False)
    deadline = time.monotonic() + 20
    status = "pending"
    while status == "pending":
        assert time.monotonic() < deadline, "the task never completed"
        result = x.event_from(["task"], token, 5.0)
        token = result["token"]
        for ev in result["events"]:
            if ev["ref"] == task and ev["operation"] != "del":
                status = ev["snapshot"]["status"]
    assert status == "success" and x.VM.get_power_state(vm) == "Running"
    x.VM.hard_shutdown(vm)
    x.VM.destroy(vm)
