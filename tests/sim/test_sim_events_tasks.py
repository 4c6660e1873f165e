"""event.from tokens/timeouts on the virtual clock, and Async task flow."""

from __future__ import annotations

import threading

from sim_helpers import GiB, connect, failure, make_vm

from xenlab.waiting import wait_for


def waiting_in_event_from(sim) -> bool:
    """A client's event.from is blocked on the deployment's condition (nothing else waits on
    it; a notify removes a waiter at once, so a waiter seen after `advance` waits again)."""
    return bool(sim.deployment.cond._waiters)  # the one observable sign of a waiting call

def event_from(x, classes, token, timeout):
    return getattr(x.event, "from")(classes, token, timeout)


def test_event_from_initial_snapshot_then_incremental(sim):
    x = connect(sim).xenapi
    vm = make_vm(x, "watched")
    first = event_from(x, ["VM"], "", 0.0)
    ops = {(e["ref"], e["operation"]) for e in first["events"]}
    assert (vm, "add") in ops
    assert all(e["class"] == "vm" for e in first["events"])
    snap = next(e for e in first["events"] if e["ref"] == vm)["snapshot"]
    assert snap["name_label"] == "watched" and snap["power_state"] == "Halted"
    assert first["valid_ref_counts"]["vm"] == len(x.VM.get_all())
    tok = first["token"]
    assert len(tok.split(",")) == 2 and all(len(p) == 20 for p in tok.split(","))
    # nothing new: empty batch, token does not go backwards
    quiet = event_from(x, ["vm"], tok, 0.0)
    assert quiet["events"] == [] and quiet["token"] >= tok
    x.VM.set_name_label(vm, "renamed")
    other = make_vm(x, "other")
    nxt = event_from(x, ["vm"], quiet["token"], 0.0)
    kinds = {(e["ref"], e["operation"]) for e in nxt["events"]}
    assert kinds == {(vm, "mod"), (other, "add")}
    mod = next(e for e in nxt["events"] if e["ref"] == vm)
    assert mod["snapshot"]["name_label"] == "renamed"
    assert nxt["token"] > quiet["token"]
    x.VM.destroy(other)
    gone = event_from(x, ["vm"], nxt["token"], 0.0)
    (d,) = [e for e in gone["events"] if e["ref"] == other]
    assert d["operation"] == "del" and "snapshot" not in d
    # class filter: host events are not VM events
    assert all(e["class"] == "host" for e in event_from(x, ["host"], "", 0.0)["events"])
    assert {e["class"] for e in event_from(x, ["*"], "", 0.0)["events"]} >= {"vm", "host", "pool", "sr"}
    assert failure(lambda: event_from(x, ["vm"], "garbage", 0.0)) == ["EVENT_FROM_TOKEN_PARSE_FAILURE", "garbage"]


def test_event_from_blocks_until_change(sim):
    x = connect(sim).xenapi
    vm = make_vm(x, "w")
    tok = event_from(x, ["vm"], "", 0.0)["token"]
    out = {}

    def waiter():
        out["r"] = event_from(connect(sim).xenapi, ["vm"], tok, 30.0)

    t = threading.Thread(target=waiter)
    t.start()
    wait_for(lambda: waiting_in_event_from(sim), "the client's event.from to wait", 10, 0.01)
    assert t.is_alive()
    sim.control.advance(10)  # virtual time passes but less than the timeout
    wait_for(lambda: waiting_in_event_from(sim), "the client's event.from to wait on", 10, 0.01)
    assert t.is_alive()
    x.VM.set_name_description(vm, "poke")
    t.join(5)
    assert not t.is_alive()
    (e,) = out["r"]["events"]
    assert e["ref"] == vm and e["operation"] == "mod" and e["snapshot"]["name_description"] == "poke"


def test_event_from_timeout_on_virtual_clock(sim):
    x = connect(sim).xenapi
    tok = event_from(x, ["vm"], "", 0.0)["token"]
    out = {}

    def waiter():
        out["r"] = event_from(connect(sim).xenapi, ["vm"], tok, 30.0)

    t = threading.Thread(target=waiter)
    t.start()
    wait_for(lambda: waiting_in_event_from(sim), "the client's event.from to wait", 10, 0.01)
    assert t.is_alive()
    sim.control.advance(31)
    t.join(5)
    assert not t.is_alive()
    assert out["r"]["events"] == [] and out["r"]["token"] >= tok


def test_messages_appear_in_event_from(sim):
    x = connect(sim).xenapi
    tok = event_from(x, ["message"], "", 0.0)["token"]
    pool_uuid = x.pool.get_uuid(x.pool.get_all()[0])
    m = x.message.create("TEST_ALERT", "4", "Pool", pool_uuid, "hello")
    (e,) = event_from(x, ["message"], tok, 0.0)["events"]
    assert e["ref"] == m and e["operation"] == "add" and e["snapshot"]["name"] == "TEST_ALERT"


def test_async_start_completes_on_clock(sim):
    x = connect(sim).xenapi
    vm = make_vm(x, "async", 1 * GiB)
    task = x.Async.VM.start(vm, False, False)
    assert task.startswith("OpaqueRef:")
    rec = x.task.get_record(task)
    assert rec["status"] == "pending" and rec["name_label"] == "Async.VM.start"
    assert x.VM.get_power_state(vm) == "Halted"
    sim.control.advance(5)
    rec = x.task.get_record(task)
    assert rec["status"] == "success" and rec["progress"] == 1.0
    assert rec["result"] == "<value></value>"
    assert x.VM.get_power_state(vm) == "Running"
    x.task.destroy(task)
    assert failure(x.task.get_record, task)[0] == "HANDLE_INVALID"


def test_async_result_failure_and_cancel(sim):
    x = connect(sim).xenapi
    (tpl,) = x.VM.get_by_name_label("Other install media")
    t = x.Async.VM.clone(tpl, "copy1")
    sim.control.advance(5)
    res = x.task.get_result(t)
    assert res.startswith("<value>OpaqueRef:") and res.endswith("</value>")
    clone = res[len("<value>") : -len("</value>")]
    assert x.VM.get_name_label(clone) == "copy1"
    vm = make_vm(x, "twice")
    x.VM.start(vm, False, False)
    bad = x.Async.VM.start(vm, False, False)
    sim.control.advance(5)
    assert x.task.get_status(bad) == "failure"
    assert x.task.get_error_info(bad) == ["VM_BAD_POWER_STATE", vm, "halted", "running"]
    halted = make_vm(x, "never")
    c = x.Async.VM.start(halted, False, False)
    x.task.cancel(c)
    sim.control.advance(5)
    assert x.task.get_status(c) == "cancelled"
    assert x.VM.get_power_state(halted) == "Halted"
    assert failure(x.task.cancel, c)[0] == "OPERATION_NOT_ALLOWED"


def test_pool_migrate_task_duration_scales_with_memory(pool):
    sim, x = pool
    from sim_helpers import host_ref, make_nfs_sr

    sr = make_nfs_sr(x)
    vm = make_vm(x, "m", 4 * GiB, sr=sr)
    x.VM.start_on(vm, host_ref(x, "h1"), False, False)
    t = x.Async.VM.pool_migrate(vm, host_ref(x, "h2"), {})
    sim.control.advance(3)  # 4 GiB needs ~5 s of simulated copy
    assert x.task.get_status(t) == "pending"
    sim.control.advance(3)
    assert x.task.get_status(t) == "success"
    assert x.VM.get_resident_on(vm) == host_ref(x, "h2")
