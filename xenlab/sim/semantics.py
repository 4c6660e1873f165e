"""Custom (non-accessor) XAPI messages: sessions, pools, hosts, VMs, storage, HA, events.

Error codes and their parameter lists follow what xapi raises for the same
situation; each handler runs with the deployment lock held.
"""

from __future__ import annotations

import copy
import re
import xml.etree.ElementTree as ET
from typing import Any

from .deployment import VM_OP_STATES, Deployment, GiB, SimHost
from .dispatch import Ctx, api, new_task
from .generic import ctor_fields
from .model import NULL_REF, ApiError, Database, new_uuid
from .wire import Lazy, encode_record

LOWER = {"Halted": "halted", "Paused": "paused", "Running": "running", "Suspended": "suspended"}

# xapi's allowed power states per VM operation, in the order it reports them.
ALLOWED_STATES = {op: list(states) for op, states in VM_OP_STATES.items()}

SR_TYPES = {"nfs", "ext", "lvm", "lvmoiscsi", "lvmohba", "iso", "udev", "smb", "file", "dummy", "xfs", "zfs"}
SHARED_SR_TYPES = {"nfs", "lvmoiscsi", "lvmohba", "iso", "smb"}


# =========================================================================== helpers


def vm_op_check(ctx: Ctx, vm: str, op: str) -> dict[str, Any]:
    rec = ctx.db.get(vm, "VM")
    if rec["is_a_template"] and op not in ("clone", "copy", "provision", "destroy", "revert"):
        raise ApiError("VM_IS_TEMPLATE", vm, op)
    if rec["is_control_domain"] and op not in ("clean_reboot", "clean_shutdown", "hard_reboot", "hard_shutdown"):
        raise ApiError("OPERATION_NOT_ALLOWED", f"Operation {op} not allowed on a control domain")
    allowed = ALLOWED_STATES[op]
    if rec["power_state"] not in allowed:
        raise ApiError("VM_BAD_POWER_STATE", vm, ", ".join(LOWER[s] for s in allowed), LOWER[rec["power_state"]])
    if rec["blocked_operations"].get(op):
        raise ApiError("OPERATION_BLOCKED", vm, rec["blocked_operations"][op])
    return rec


def host_of(ctx: Ctx, href: str) -> SimHost:
    ctx.db.get(href, "host")
    return ctx.dep.host_by_ref(href)


def assert_contact(ctx: Ctx, href: str) -> None:
    dep = ctx.dep
    if not dep.reachable(dep.master_of(ctx.db), dep.host_by_ref(href)):
        raise ApiError("CANNOT_CONTACT_HOST", href)


def vm_duration(ctx: Ctx, args: tuple) -> float:
    return 2.0


def migrate_duration(ctx: Ctx, args: tuple) -> float:
    try:
        mem = int(ctx.db.get(args[0], "VM")["memory_static_max"])
    except ApiError:
        return 0.0
    return 1.0 + mem / GiB  # ~1 GiB/s of dirty memory plus set-up


# =========================================================================== session


@api("session.login_with_password")
def login_with_password(ctx: Ctx, uname: str, pwd: str, version: str = "1.1", originator: str = "") -> str:
    dep, host = ctx.dep, ctx.host
    if not dep.is_master(host):
        master = dep.master_of(ctx.db)
        raise ApiError("HOST_IS_SLAVE", ctx.db.get(master.ref, "host")["address"])
    if not dep.check_password(uname, pwd):
        raise ApiError("SESSION_AUTHENTICATION_FAILED", uname, "Authentication failure")
    return ctx.db.create(
        "session",
        this_host=host.ref,
        last_active=dep.now(),
        pool=False,
        is_local_superuser=True,
        auth_user_name=uname,
        originator=originator,
        validation_time=dep.now(),
    )


@api("session.logout")
def logout(ctx: Ctx) -> None:
    if ctx.db.exists(ctx.session, "session"):
        ctx.db.destroy(ctx.session)


@api("session.local_logout")
def local_logout(ctx: Ctx) -> None:
    logout(ctx)


@api("session.change_password")
def change_password(ctx: Ctx, old: str, new: str) -> None:
    if not ctx.dep.check_password(ctx.dep.user, old):
        raise ApiError("SESSION_AUTHENTICATION_FAILED", ctx.dep.user, "Authentication failure")
    ctx.dep._password = new


# =========================================================================== task


@api("task.create")
def task_create(ctx: Ctx, label: str, description: str) -> str:
    return new_task(ctx, label, description)


@api("task.cancel")
def task_cancel(ctx: Ctx, task: str) -> None:
    rec = ctx.db.get(task, "task")
    if "cancel" not in rec["allowed_operations"] or rec["status"] != "pending":
        raise ApiError("OPERATION_NOT_ALLOWED", f"Task {task} cannot be cancelled in state {rec['status']}")
    ctx.db.set(
        task,
        status="cancelled",
        finished=ctx.dep.now(),
        progress=1.0,
        error_info=["TASK_CANCELLED", task],
        allowed_operations=[],
    )


@api("task.destroy")
def task_destroy(ctx: Ctx, task: str) -> None:
    ctx.db.get(task, "task")
    ctx.db.destroy(task)


def _task_setter(field: str):
    def fn(ctx: Ctx, task: str, value: Any) -> None:
        ctx.db.get(task, "task")
        ctx.db.set(task, **{field: value})

    return fn


for _f in ("status", "progress", "result", "error_info"):
    api(f"task.set_{_f}")(_task_setter(_f))


# =========================================================================== event

_TOKEN_RE = re.compile(r"^\s*(\d+)\s*,\s*(\d+)\s*$")


def _parse_token(token: str) -> int:
    if token == "":
        return 0
    m = _TOKEN_RE.match(token)
    if not m:
        raise ApiError("EVENT_FROM_TOKEN_PARSE_FAILURE", token)
    return int(m.group(1))


def _subs(ctx: Ctx, classes: list[str]) -> list[tuple[str, str | None]]:
    out = []
    for c in classes:
        if c == "*":
            out.append(("*", None))
            continue
        cls, _, obj = c.partition("/")
        out.append((cls.lower(), obj or None))
    return out


def _matches(subs, cls: str, ref: str) -> bool:
    lc = cls.lower()
    for c, o in subs:
        if c == "*" or (c == lc and (o is None or o == ref)):
            return True
    return False


def collect_events(ctx: Ctx, subs, since: int) -> tuple[list[dict], int, int]:
    db, dm = ctx.db, ctx.dm
    changes = db.changes_since(since)
    last_op: dict[str, tuple[str, str, int]] = {}
    created_in_window: set[str] = set()
    for ch in changes:
        if ch.op == "add":
            created_in_window.add(ch.ref)
        last_op[ch.ref] = (ch.cls, ch.op, ch.gen)
    events = []
    for ref, (cls, op, gen) in sorted(last_op.items(), key=lambda kv: kv[1][2]):
        if not _matches(subs, cls, ref):
            continue
        if op == "del" or not db.exists(ref):
            if ref in created_in_window:
                continue  # born and died inside the window: nothing to report
            events.append(
                {
                    "id": "0" if cls == "message" else str(gen),
                    "timestamp": "0.0",
                    "class": cls.lower(),
                    "operation": "del",
                    "ref": ref,
                }
            )
            continue
        ev_op = "add" if ref in created_in_window else "mod"
        rec = copy.deepcopy(db.get(ref))
        events.append(
            {
                "id": "0" if cls == "message" else str(gen),
                "timestamp": "0.0",
                "class": cls.lower(),
                "operation": ev_op,
                "ref": ref,
                "snapshot": Lazy(lambda proto, c=cls, r=rec: encode_record(dm, c, r, proto)),
            }
        )
    msg_gen = max((ch.gen for ch in changes if ch.cls == "message"), default=0)
    return events, ctx.dep.gen.value, msg_gen


@api("event.from")
def event_from(ctx: Ctx, classes: list[str], token: str, timeout: float) -> dict[str, Any]:
    dep = ctx.dep
    since = _parse_token(token)
    msg_since = 0
    if token:
        msg_since = int(token.split(",")[1])
    subs = _subs(ctx, classes)
    deadline = dep.clock.now() + max(0.0, timeout)
    while True:
        if ctx.session and not ctx.db.exists(ctx.session, "session"):
            raise ApiError("SESSION_INVALID", ctx.session)
        events, last, msg_gen = collect_events(ctx, subs, since)
        if events or dep.clock.now() >= deadline or dep.stopping or ctx.host.db is not ctx.db:
            break
        since = last
        wait = min(1.0, max(0.01, deadline - dep.clock.now())) if dep.clock.realtime else 1.0
        dep.cond.wait(wait)
    counts = {c.lower(): n for c, n in ctx.db.counts().items()}
    token_out = f"{last:020d},{max(msg_gen, msg_since):020d}"
    return {"events": events, "valid_ref_counts": counts, "token": token_out}


_REGISTERED: dict[str, tuple[list, int]] = {}


@api("event.register")
def event_register(ctx: Ctx, classes: list[str]) -> None:
    subs, last = _REGISTERED.get(ctx.session, ([], ctx.dep.gen.value))
    _REGISTERED[ctx.session] = (subs + [c for c in classes if c not in subs], last)


@api("event.unregister")
def event_unregister(ctx: Ctx, classes: list[str]) -> None:
    subs, last = _REGISTERED.get(ctx.session, ([], ctx.dep.gen.value))
    _REGISTERED[ctx.session] = ([c for c in subs if c not in classes], last)


@api("event.next")
def event_next(ctx: Ctx) -> list[dict]:
    if ctx.session not in _REGISTERED:
        raise ApiError("SESSION_NOT_REGISTERED", ctx.session)
    classes, since = _REGISTERED[ctx.session]
    subs = _subs(ctx, classes)
    while True:
        events, last, _ = collect_events(ctx, subs, since)
        if events or ctx.dep.stopping:
            break
        since = last
        ctx.dep.cond.wait(1.0)
    _REGISTERED[ctx.session] = (classes, last)
    for e in events:
        e["obj_uuid"] = ""
    return events


@api("event.get_current_id")
def event_get_current_id(ctx: Ctx) -> int:
    return ctx.dep.gen.value


@api("event.inject")
def event_inject(ctx: Ctx, cls: str, ref: str) -> str:
    real = ctx.dm.class_by_lower(cls)
    if real is None or not ctx.db.exists(ref, real):
        raise ApiError("HANDLE_INVALID", cls, ref)
    ctx.db.touch(ref)
    return f"{ctx.dep.gen.value:020d},{0:020d}"


# =========================================================================== message


@api("message.create")
def message_create(ctx: Ctx, name: str, priority: int, cls: str, obj_uuid: str, body: str) -> str:
    return ctx.dep.add_message(ctx.db, name, priority, cls, obj_uuid, body)


@api("message.destroy")
def message_destroy(ctx: Ctx, ref: str) -> None:
    ctx.db.get(ref, "message")
    ctx.db.destroy(ref)


@api("message.destroy_many")
def message_destroy_many(ctx: Ctx, refs: list[str]) -> None:
    for r in refs:
        if ctx.db.exists(r, "message"):
            ctx.db.destroy(r)


@api("message.get_since")
def message_get_since(ctx: Ctx, since) -> dict:
    return {r: m for r, m in ctx.db.iter_records("message") if m["timestamp"] > since}


@api("message.get")
def message_get(ctx: Ctx, cls: str, obj_uuid: str, since) -> dict:
    return {
        r: m
        for r, m in ctx.db.iter_records("message")
        if m["cls"] == cls and m["obj_uuid"] == obj_uuid and m["timestamp"] > since
    }


# =========================================================================== pool


@api("pool.join", duration=10.0)
def pool_join(ctx: Ctx, master_address: str, user: str, password: str) -> None:
    _join(ctx, master_address, user, password, force=False)


@api("pool.join_force", duration=10.0)
def pool_join_force(ctx: Ctx, master_address: str, user: str, password: str) -> None:
    _join(ctx, master_address, user, password, force=True)


def _join(ctx: Ctx, address: str, user: str, password: str, force: bool) -> None:
    dep, me = ctx.dep, ctx.host
    my_db = ctx.db
    try:
        target = dep.host(address.split("://")[-1].split(":")[0].rstrip("/"))
    except KeyError:
        raise ApiError("JOINING_HOST_CONNECTION_FAILED") from None
    if not dep.reachable(me, target):
        raise ApiError("JOINING_HOST_CONNECTION_FAILED")
    rdb = target.db
    assert rdb is not None
    # the joiner logs in to the remote side first, as xapi does
    if not dep.is_master(target):
        raise ApiError("HOST_IS_SLAVE", rdb.get(dep.master_of(rdb).ref, "host")["address"])
    if not dep.check_password(user, password):
        raise ApiError("SESSION_AUTHENTICATION_FAILED", user, "Authentication failure")
    if dep.pool(my_db)["ha_enabled"]:
        raise ApiError("HA_IS_ENABLED")
    if dep.pool(rdb)["ha_enabled"]:
        raise ApiError("HA_IS_ENABLED")
    if rdb is my_db:
        msg = "Host is already part of a pool" if len(my_db.refs("host")) > 1 else "Host cannot become slave of itself"
        raise ApiError("OPERATION_NOT_ALLOWED", msg)
    if len(my_db.refs("host")) > 1:
        raise ApiError("JOINING_HOST_CANNOT_BE_MASTER_OF_OTHER_HOSTS")
    for vm, rec in my_db.iter_records("VM"):
        if not rec["is_control_domain"] and rec["power_state"] == "Running":
            raise ApiError("JOINING_HOST_CANNOT_HAVE_RUNNING_VMS")
    for vm, rec in my_db.iter_records("VM"):
        if rec["current_operations"]:
            raise ApiError("JOINING_HOST_CANNOT_HAVE_VMS_WITH_CURRENT_OPERATIONS")
    for sr, rec in my_db.iter_records("SR"):
        if rec["shared"] and not rec["is_tools_sr"]:
            raise ApiError("JOINING_HOST_CANNOT_CONTAIN_SHARED_SRS")
    _assert_homogeneous(my_db.get(me.ref, "host"), rdb.get(target.ref, "host"))
    _merge_into(dep, me, my_db, rdb)


def _assert_homogeneous(joiner: dict[str, Any], master: dict[str, Any]) -> None:
    """xapi's pre-join checks: same product version, same CPU vendor and features."""
    mine, theirs = joiner["software_version"], master["software_version"]
    if mine.get("product_version") != theirs.get("product_version"):
        raise ApiError("POOL_JOINING_HOST_MUST_HAVE_SAME_PRODUCT_VERSION")
    for key, what in (("vendor", "CPU vendor"), ("features", "CPU features")):
        if joiner["cpu_info"].get(key) != master["cpu_info"].get(key):
            raise ApiError("POOL_HOSTS_NOT_HOMOGENEOUS", f"{what} differ")


def _merge_into(dep: Deployment, me: SimHost, src: Database, dst: Database) -> None:
    """Move the joiner's host-local objects into the master's database."""
    moved: list[str] = []
    hrec = src.get(me.ref, "host")

    def move(ref: str) -> None:
        if not src.exists(ref) or ref in moved:
            return
        cls, rec = src.release(ref)
        dst.adopt(cls, ref, rec)
        moved.append(ref)

    move(hrec["metrics"])
    for c in list(hrec["host_CPUs"]):
        move(c)
    # networks: reuse the master's network with the same bridge
    bridge_net = {r["bridge"]: n for n, r in dst.iter_records("network")}
    for pif in list(hrec["PIFs"]):
        prec = src.get(pif, "PIF")
        net = prec["network"]
        nrec = src.get(net, "network")
        if nrec["bridge"] in bridge_net:
            prec["network"] = bridge_net[nrec["bridge"]]
        else:
            move(net)
            dst.get(net)["PIFs"] = []
            dst.get(net)["VIFs"] = []
            bridge_net[nrec["bridge"]] = net
        move(pif)
        dst.get(prec["network"])["PIFs"].append(pif)
        dst.touch(prec["network"])
    for pbd in list(hrec["PBDs"]):
        sr = src.get(pbd, "PBD")["SR"]
        for vdi in list(src.get(sr, "SR")["VDIs"]):
            src.get(vdi, "VDI")["VBDs"] = []
            move(vdi)
        move(sr)
        move(pbd)
    for vm in list(hrec["resident_VMs"]):
        vrec = src.get(vm, "VM")
        if vrec["is_control_domain"]:
            move(vrec["metrics"])
            vrec["VBDs"], vrec["VIFs"] = [], []
            move(vm)
    move(me.ref)
    me.db = dst
    for sess in src.refs("session"):
        src.destroy(sess)
    dep.refresh_memory(dst, me.ref)


@api("pool.eject", duration=10.0)
def pool_eject(ctx: Ctx, host: str) -> None:
    dep, db = ctx.dep, ctx.db
    h = host_of(ctx, host)
    if dep.pool(db)["ha_enabled"]:
        raise ApiError("HA_IS_ENABLED")
    if dep.is_master(h):
        raise ApiError("INTERNAL_ERROR", "Xapi_pool.Cannot_eject_master")
    for vm in db.get(host, "host")["resident_VMs"]:
        rec = db.get(vm, "VM")
        if not rec["is_control_domain"] and rec["power_state"] != "Halted":
            raise ApiError("OPERATION_NOT_ALLOWED", "VM resident on host")
    hrec = db.get(host, "host")
    for pbd in list(hrec["PBDs"]):
        sr = db.get(pbd, "PBD")["SR"]
        db.destroy(pbd)
        srec = db.get(sr, "SR")
        if not srec["shared"]:
            for vdi in list(srec["VDIs"]):
                for vbd in list(db.get(vdi, "VDI")["VBDs"]):
                    db.destroy(vbd)
                db.destroy(vdi)
            db.destroy(sr)
    for pif in list(hrec["PIFs"]):
        db.destroy(pif)
    for c in list(hrec["host_CPUs"]):
        db.destroy(c)
    for vm in list(hrec["resident_VMs"]):
        vrec = db.get(vm, "VM")
        if vrec["is_control_domain"]:
            if db.exists(vrec["metrics"]):
                db.destroy(vrec["metrics"])
            db.destroy(vm)
    if db.exists(hrec["metrics"]):
        db.destroy(hrec["metrics"])
    db.destroy(host)
    dep.boot_standalone(h)


@api("pool.designate_new_master", duration=5.0)
def pool_designate_new_master(ctx: Ctx, host: str) -> None:
    dep, db = ctx.dep, ctx.db
    h = host_of(ctx, host)
    if dep.pool(db)["ha_enabled"]:
        raise ApiError("HA_IS_ENABLED")
    if dep.is_master(h):
        return
    assert_contact(ctx, host)
    db.set(dep.pool_ref(db), master=host)


@api("pool.sync_database")
def pool_sync_database(ctx: Ctx) -> None:
    return None


@api("pool.enable_ha", duration=30.0)
def pool_enable_ha(ctx: Ctx, heartbeat_srs: list[str], configuration: dict[str, str]) -> None:
    dep, db = ctx.dep, ctx.db
    pref = dep.pool_ref(db)
    if db.get(pref)["ha_enabled"]:
        raise ApiError("HA_IS_ENABLED")
    master = dep.master_of(db)
    for h in dep.members(db):
        if not dep.host_live(db, h.ref) or not dep.reachable(master, h):
            raise ApiError("HOST_OFFLINE", h.ref)
    hosts = [h.ref for h in dep.members(db)]

    def fits(sr: str) -> bool:
        return all(dep.host_sees_sr(db, href, sr) for href in hosts)

    if not heartbeat_srs:
        heartbeat_srs = [sr for sr, rec in db.iter_records("SR") if rec["shared"] and fits(sr)]
    if not heartbeat_srs:
        raise ApiError("CANNOT_CREATE_STATE_FILE")
    sr = heartbeat_srs[0]
    db.get(sr, "SR")
    if not fits(sr):
        raise ApiError("SR_HAS_NO_PBDS", sr)
    statefile = db.create(
        "VDI",
        name_label="Statefile for HA",
        SR=sr,
        virtual_size=4 * 1024 * 1024,
        type="ha_statefile",
        sharable=True,
        read_only=False,
        other_config={},
    )
    db.set(
        pref,
        ha_enabled=True,
        ha_configuration=dict(configuration),
        ha_statefiles=[statefile],
        ha_plan_exists_for=int(db.get(pref)["ha_host_failures_to_tolerate"]),
    )
    for h in dep.members(db):
        db.set(h.ref, ha_statefiles=[statefile], ha_network_peers=[x.ref for x in dep.members(db) if x is not h])
    # hosts already silent when HA comes on are judged by HA from now on
    for h in dep.members(db):
        if h.down_since is not None:
            dep.clock.call_later(dep.ha_timeout(db), lambda: dep._ha_tick(db))


@api("pool.disable_ha", duration=10.0)
def pool_disable_ha(ctx: Ctx) -> None:
    dep, db = ctx.dep, ctx.db
    pref = dep.pool_ref(db)
    prec = db.get(pref)
    if not prec["ha_enabled"]:
        raise ApiError("HA_NOT_ENABLED")
    for vdi in prec["ha_statefiles"]:
        if db.exists(vdi, "VDI"):
            db.destroy(vdi)
    db.set(pref, ha_enabled=False, ha_statefiles=[], ha_plan_exists_for=0)
    for h in dep.members(db):
        db.set(h.ref, ha_statefiles=[], ha_network_peers=[])


@api("pool.set_ha_host_failures_to_tolerate")
def pool_set_ntol(ctx: Ctx, pool: str, value: int) -> None:
    ctx.db.get(pool, "pool")
    if value < 0:
        raise ApiError("INVALID_VALUE", "ha_host_failures_to_tolerate", value)
    ctx.db.set(pool, ha_host_failures_to_tolerate=value)
    if ctx.db.get(pool)["ha_enabled"]:
        ctx.db.set(pool, ha_plan_exists_for=min(value, _max_failures(ctx)))


def _max_failures(ctx: Ctx) -> int:
    return max(0, len(ctx.dep.members(ctx.db)) - 1)


@api("pool.ha_compute_max_host_failures_to_tolerate")
def pool_ha_max(ctx: Ctx) -> int:
    return _max_failures(ctx)


@api("pool.ha_failover_plan_exists")
def pool_ha_plan_exists(ctx: Ctx, n: int) -> bool:
    return n <= _max_failures(ctx)


@api("pool.emergency_transition_to_master")
def pool_emergency_transition(ctx: Ctx) -> None:
    ctx.db.set(ctx.dep.pool_ref(ctx.db), master=ctx.host.ref)


# =========================================================================== host


@api("host.disable")
def host_disable(ctx: Ctx, host: str, auto_enable: bool = True) -> None:
    host_of(ctx, host)
    ctx.db.set(host, enabled=False)


@api("host.enable")
def host_enable(ctx: Ctx, host: str) -> None:
    host_of(ctx, host)
    if not ctx.dep.host_live(ctx.db, host):
        raise ApiError("HOST_NOT_LIVE")
    ctx.db.set(host, enabled=True)


def evacuation_plan(ctx: Ctx, host: str) -> dict[str, tuple[str, list[str]] | str]:
    """vm -> target host ref, or vm -> (error code, params); mirrors xapi's planner."""
    dep, db = ctx.dep, ctx.db
    targets = dep.usable_hosts(db, exclude=host)
    vms = [v for v in db.get(host, "host")["resident_VMs"] if not db.get(v, "VM")["is_control_domain"]]
    plan: dict[str, Any] = {}
    if not targets:
        for v in vms:
            plan[v] = ("NO_HOSTS_AVAILABLE", [v])
        return plan
    ha = dep.pool(db)["ha_enabled"]
    free = {t: dep.host_free_memory(db, t) for t in targets}
    for v in sorted(vms, key=lambda v: -dep.vm_memory_needed(db.get(v, "VM"))):
        rec = db.get(v, "VM")
        if ha and not (rec["ha_restart_priority"] == "restart" and rec["ha_always_run"]):
            # xapi: with HA on, only protected VMs may be evacuated
            plan[v] = ("HOST_EVACUATE_VM_NOT_HA_PROTECTED", [v])
            continue
        srs = dep.vm_srs(db, v)
        visible = [t for t in targets if all(dep.host_sees_sr(db, t, s) for s in srs)]
        if not visible:
            plan[v] = ("VM_REQUIRES_SR", [v, srs[0]])
            continue
        need = dep.vm_memory_needed(rec)
        fit = [t for t in visible if free[t] >= need]
        if not fit:
            plan[v] = ("HOST_NOT_ENOUGH_FREE_MEMORY", [v])
            continue
        best = max(fit, key=lambda t: free[t])
        free[best] -= need
        plan[v] = best
    return plan


@api("host.evacuate", duration=lambda ctx, a: 2.0 * len(ctx.db.get(a[0], "host")["resident_VMs"]))
def host_evacuate(ctx: Ctx, host: str, network: str = NULL_REF, batch: int = 0) -> None:
    host_of(ctx, host)
    plan = evacuation_plan(ctx, host)
    for v, p in plan.items():
        if isinstance(p, tuple):
            raise ApiError(p[0], *p[1])
    for v, target in plan.items():
        _migrate(ctx, v, target)


@api("host.get_vms_which_prevent_evacuation")
def host_vms_preventing(ctx: Ctx, host: str) -> dict[str, list[str]]:
    host_of(ctx, host)
    return {v: [p[0], *p[1]] for v, p in evacuation_plan(ctx, host).items() if isinstance(p, tuple)}


@api("host.assert_can_evacuate")
def host_assert_can_evacuate(ctx: Ctx, host: str) -> None:
    host_of(ctx, host)
    errs = [",".join([p[0], *p[1]]) for p in evacuation_plan(ctx, host).values() if isinstance(p, tuple)]
    if errs:
        raise ApiError("CANNOT_EVACUATE_HOST", "|".join(errs))


@api("host.compute_free_memory")
def host_compute_free_memory(ctx: Ctx, host: str) -> int:
    host_of(ctx, host)
    return ctx.dep.host_free_memory(ctx.db, host)


@api("host.compute_memory_overhead")
def host_compute_memory_overhead(ctx: Ctx, host: str) -> int:
    return int(ctx.db.get(host, "host")["memory_overhead"])


@api("host.get_servertime")
def host_get_servertime(ctx: Ctx, host: str):
    host_of(ctx, host)
    return ctx.dep.now()


@api("host.get_server_localtime")
def host_get_server_localtime(ctx: Ctx, host: str):
    host_of(ctx, host)
    return ctx.dep.now()


@api("host.list_methods")
def host_list_methods(ctx: Ctx) -> list[str]:
    from .dispatch import implemented_messages

    return implemented_messages(ctx.dm)


def _host_down(ctx: Ctx, host: str, reboot: bool) -> None:
    dep, db = ctx.dep, ctx.db
    h = host_of(ctx, host)
    if db.get(host, "host")["enabled"]:
        raise ApiError("HOST_NOT_DISABLED")
    for vm in db.get(host, "host")["resident_VMs"]:
        if not db.get(vm, "VM")["is_control_domain"]:
            raise ApiError("HOST_HAS_RESIDENT_VMS", host)
    if reboot:
        return  # comes straight back
    h.alive = False
    h.down_since = None  # clean shutdown: not a failure
    db.set(db.get(host, "host")["metrics"], live=False)
    dep._fire(h)


@api("host.shutdown", duration=30.0)
def host_shutdown(ctx: Ctx, host: str) -> None:
    _host_down(ctx, host, reboot=False)


@api("host.reboot", duration=60.0)
def host_reboot(ctx: Ctx, host: str) -> None:
    _host_down(ctx, host, reboot=True)


@api("host.power_on", duration=60.0)
def host_power_on(ctx: Ctx, host: str) -> None:
    h = host_of(ctx, host)
    if ctx.dep.host_live(ctx.db, host) and h.alive:
        raise ApiError("HOST_IS_LIVE", host)
    ctx.dep.heal(h.index)


@api("host.declare_dead")
def host_declare_dead(ctx: Ctx, host: str) -> None:
    dep, db = ctx.dep, ctx.db
    h = host_of(ctx, host)
    if dep.reachable(dep.master_of(db), h):
        raise ApiError("HOST_IS_LIVE", host)
    for vm in list(db.get(host, "host")["resident_VMs"]):
        if not db.get(vm, "VM")["is_control_domain"]:
            dep.force_halt(db, vm)
    db.set(db.get(host, "host")["metrics"], live=False)


# =========================================================================== storage


@api("SR.create", duration=5.0)
def sr_create(
    ctx: Ctx,
    host: str,
    device_config: dict[str, str],
    physical_size: int,
    name_label: str,
    name_description: str,
    type: str,
    content_type: str,
    shared: bool,
    sm_config: dict[str, str],
) -> str:
    dep, db = ctx.dep, ctx.db
    host_of(ctx, host)
    if type not in SR_TYPES:
        raise ApiError("SR_UNKNOWN_DRIVER", type)
    if type == "nfs":
        if not device_config.get("server"):
            # SM's ConfigServerMissing / ConfigServerPathMissing, as xapi relays them
            raise ApiError("SR_BACKEND_FAILURE_102", "", "The request is missing the server parameter", "")
        if not device_config.get("serverpath"):
            raise ApiError("SR_BACKEND_FAILURE_101", "", "The request is missing the serverpath parameter", "")
    if shared and type not in SHARED_SR_TYPES:
        raise ApiError("SR_OPERATION_NOT_SUPPORTED", type)
    size = physical_size or (2 * 1024 * GiB if type == "nfs" else 1024 * GiB)
    sr = db.create(
        "SR",
        name_label=name_label,
        name_description=name_description,
        type=type,
        content_type=content_type,
        shared=shared,
        physical_size=size,
        sm_config=dict(sm_config),
        other_config={},
    )
    hosts = [h.ref for h in dep.members(db)] if shared else [host]
    for href in hosts:
        db.create(
            "PBD",
            host=href,
            SR=sr,
            device_config=dict(device_config),
            currently_attached=dep.reachable(dep.master_of(db), dep.host_by_ref(href)),
        )
    return sr


@api("SR.destroy")
def sr_destroy(ctx: Ctx, sr: str) -> None:
    _sr_remove(ctx, sr, forget=False)


@api("SR.forget")
def sr_forget(ctx: Ctx, sr: str) -> None:
    _sr_remove(ctx, sr, forget=True)


def _sr_remove(ctx: Ctx, sr: str, forget: bool) -> None:
    db = ctx.db
    rec = db.get(sr, "SR")
    for vdi in rec["VDIs"]:
        if db.get(vdi, "VDI")["VBDs"]:
            raise ApiError("VDI_IN_USE", vdi, "destroy")
    for vdi in list(rec["VDIs"]):
        db.destroy(vdi)
    for pbd in list(rec["PBDs"]):
        db.destroy(pbd)
    db.destroy(sr)


@api("SR.scan")
def sr_scan(ctx: Ctx, sr: str) -> None:
    ctx.db.get(sr, "SR")


@api("PBD.plug")
def pbd_plug(ctx: Ctx, pbd: str) -> None:
    ctx.db.get(pbd, "PBD")
    ctx.db.set(pbd, currently_attached=True)


@api("PBD.unplug")
def pbd_unplug(ctx: Ctx, pbd: str) -> None:
    ctx.db.get(pbd, "PBD")
    ctx.db.set(pbd, currently_attached=False)


def _sr_alloc(ctx: Ctx, sr: str, size: int) -> None:
    rec = ctx.db.get(sr, "SR")
    if rec["type"] in ("lvm", "lvmoiscsi", "lvmohba") and rec["physical_utilisation"] + size > rec["physical_size"]:
        raise ApiError("SR_FULL", rec["physical_size"] - rec["physical_utilisation"], size)
    ctx.db.set(
        sr, virtual_allocation=rec["virtual_allocation"] + size, physical_utilisation=rec["physical_utilisation"] + size
    )


@api("VDI.create", duration=1.0)
def vdi_create(ctx: Ctx, record: dict[str, Any]) -> str:
    f = ctor_fields(ctx.dm, "VDI", record)
    ctx.db.get(f["SR"], "SR")
    _sr_alloc(ctx, f["SR"], int(f["virtual_size"]))
    f["location"] = f.get("location") or new_uuid()
    f["physical_utilisation"] = int(f["virtual_size"])
    return ctx.db.create("VDI", **{k: v for k, v in f.items() if k in ctx.dm.cls("VDI").fields})


@api("VDI.destroy")
def vdi_destroy(ctx: Ctx, vdi: str) -> None:
    rec = ctx.db.get(vdi, "VDI")
    for vbd in rec["VBDs"]:
        if ctx.db.get(vbd, "VBD")["currently_attached"]:
            raise ApiError("VDI_IN_USE", vdi, "destroy")
    sr = ctx.db.get(rec["SR"], "SR")
    ctx.db.set(
        rec["SR"],
        virtual_allocation=max(0, sr["virtual_allocation"] - rec["virtual_size"]),
        physical_utilisation=max(0, sr["physical_utilisation"] - rec["virtual_size"]),
    )
    for vbd in list(rec["VBDs"]):
        ctx.db.set(vbd, VDI=NULL_REF, empty=True)
    ctx.db.destroy(vdi)


def _clone_vdi(ctx: Ctx, vdi: str, sr: str | None = None) -> str:
    rec = copy.deepcopy(ctx.db.get(vdi, "VDI"))
    target = sr if sr and sr != NULL_REF else rec["SR"]
    _sr_alloc(ctx, target, int(rec["virtual_size"]))
    keep = {
        k: v
        for k, v in rec.items()
        if k not in ("uuid", "VBDs", "snapshots", "crash_dumps", "SR", "location", "current_operations")
    }
    return ctx.db.create("VDI", SR=target, location=new_uuid(), **keep)


@api("VDI.clone", duration=1.0)
def vdi_clone(ctx: Ctx, vdi: str, driver_params: dict | None = None) -> str:
    return _clone_vdi(ctx, vdi)


@api("VDI.copy", duration=5.0)
def vdi_copy(ctx: Ctx, vdi: str, sr: str, *rest) -> str:
    ctx.db.get(sr, "SR")
    return _clone_vdi(ctx, vdi, sr)


def _free_device(used: list[str], limit: int = 16) -> str:
    for n in range(limit):
        if str(n) not in used:
            return str(n)
    raise ApiError("INVALID_DEVICE", "autodetect")


@api("VBD.create")
def vbd_create(ctx: Ctx, record: dict[str, Any]) -> str:
    db = ctx.db
    f = ctor_fields(ctx.dm, "VBD", record)
    vm = db.get(f["VM"], "VM")
    if f["VDI"] != NULL_REF:
        db.get(f["VDI"], "VDI")
    used = [db.get(v, "VBD")["userdevice"] for v in vm["VBDs"]]
    if f["userdevice"] == "autodetect":
        f["userdevice"] = _free_device(used)
    elif f["userdevice"] in used:
        raise ApiError("DEVICE_ALREADY_EXISTS", f["userdevice"])
    f["device"] = "xvd" + "abcdefghijklmnop"[int(f["userdevice"]) % 16] if f["userdevice"].isdigit() else ""
    f["currently_attached"] = False
    return db.create("VBD", **{k: v for k, v in f.items() if k in ctx.dm.cls("VBD").fields})


@api("VBD.destroy")
def vbd_destroy(ctx: Ctx, vbd: str) -> None:
    rec = ctx.db.get(vbd, "VBD")
    if rec["currently_attached"]:
        raise ApiError("OPERATION_NOT_ALLOWED", "VBD is currently attached")
    ctx.db.destroy(vbd)


@api("VBD.plug")
def vbd_plug(ctx: Ctx, vbd: str) -> None:
    rec = ctx.db.get(vbd, "VBD")
    vm = ctx.db.get(rec["VM"], "VM")
    if vm["power_state"] != "Running":
        raise ApiError("VM_BAD_POWER_STATE", rec["VM"], "running", LOWER[vm["power_state"]])
    if rec["currently_attached"]:
        raise ApiError("DEVICE_ALREADY_ATTACHED", vbd)
    ctx.db.set(vbd, currently_attached=True)


@api("VBD.unplug")
def vbd_unplug(ctx: Ctx, vbd: str) -> None:
    rec = ctx.db.get(vbd, "VBD")
    if not rec["currently_attached"]:
        raise ApiError("DEVICE_ALREADY_DETACHED", vbd)
    ctx.db.set(vbd, currently_attached=False)


api("VBD.unplug_force")(vbd_unplug)


# =========================================================================== network


@api("VIF.create")
def vif_create(ctx: Ctx, record: dict[str, Any]) -> str:
    db = ctx.db
    f = ctor_fields(ctx.dm, "VIF", record)
    vm = db.get(f["VM"], "VM")
    db.get(f["network"], "network")
    used = [db.get(v, "VIF")["device"] for v in vm["VIFs"]]
    if f["device"] in used:
        raise ApiError("DEVICE_ALREADY_EXISTS", f["device"])
    if not f["MAC"]:
        u = new_uuid().replace("-", "")
        f["MAC"] = "02:" + ":".join(u[i : i + 2] for i in range(0, 10, 2))
    f.update(currently_attached=False, MAC_autogenerated=not record.get("MAC"))
    return db.create("VIF", **{k: v for k, v in f.items() if k in ctx.dm.cls("VIF").fields})


@api("VIF.destroy")
def vif_destroy(ctx: Ctx, vif: str) -> None:
    ctx.db.get(vif, "VIF")
    ctx.db.destroy(vif)


@api("network.create")
def network_create(ctx: Ctx, record: dict[str, Any]) -> str:
    f = ctor_fields(ctx.dm, "network", record)
    if not f.get("bridge"):
        f["bridge"] = f"xapi{len(ctx.db.refs('network'))}"
    return ctx.db.create("network", **f)


@api("network.destroy")
def network_destroy(ctx: Ctx, net: str) -> None:
    rec = ctx.db.get(net, "network")
    if rec["VIFs"] or rec["PIFs"]:
        raise ApiError("NETWORK_CONTAINS_VIF" if rec["VIFs"] else "NETWORK_CONTAINS_PIF", *(rec["VIFs"] or rec["PIFs"]))
    ctx.db.destroy(net)


# =========================================================================== VM


@api("VM.create")
def vm_create(ctx: Ctx, record: dict[str, Any]) -> str:
    dep, db = ctx.dep, ctx.db
    f = ctor_fields(ctx.dm, "VM", record)
    for k in ("is_control_domain",):
        f.pop(k, None)
    metrics = db.create("VM_metrics", install_time=dep.now(), last_updated=dep.now())
    f.update(metrics=metrics, power_state="Halted", domid=-1)
    if not f.get("memory_target"):
        f["memory_target"] = f["memory_dynamic_max"]
    vm = db.create("VM", **{k: v for k, v in f.items() if k in ctx.dm.cls("VM").fields})
    dep.update_overhead(db, vm)
    return vm


@api("VM.destroy")
def vm_destroy(ctx: Ctx, vm: str) -> None:
    db = ctx.db
    rec = db.get(vm, "VM")
    if rec["is_control_domain"]:
        raise ApiError("OPERATION_NOT_ALLOWED", "Cannot destroy a control domain")
    if rec["power_state"] not in ALLOWED_STATES["destroy"]:
        raise ApiError("VM_BAD_POWER_STATE", vm, "halted, suspended", LOWER[rec["power_state"]])
    for vbd in list(rec["VBDs"]):
        db.destroy(vbd)
    for vif in list(rec["VIFs"]):
        db.destroy(vif)
    if db.exists(rec["metrics"]):
        db.destroy(rec["metrics"])
    db.destroy(vm)


def _copy_vm(
    ctx: Ctx, vm: str, new_name: str, sr: str | None, full: bool, vbds: list[str] | None = None, vdi_fn=None
) -> str:
    dep, db = ctx.dep, ctx.db
    rec = copy.deepcopy(db.get(vm, "VM"))
    skip = {
        "uuid",
        "VBDs",
        "VIFs",
        "consoles",
        "VUSBs",
        "crash_dumps",
        "VTPMs",
        "metrics",
        "guest_metrics",
        "snapshots",
        "children",
        "resident_on",
        "scheduled_to_be_resident_on",
        "current_operations",
        "allowed_operations",
        "VGPUs",
        "attached_PCIs",
        "blobs",
        "snapshot_of",
        "parent",
    }
    fields = {k: v for k, v in rec.items() if k not in skip}
    metrics = db.create("VM_metrics", install_time=dep.now(), last_updated=dep.now())
    fields.update(name_label=new_name, metrics=metrics, power_state="Halted", domid=-1, is_default_template=False)
    new = db.create("VM", **fields, parent=vm if not full else NULL_REF)
    dep.update_overhead(db, new)
    for vbd in rec["VBDs"] if vbds is None else vbds:
        v = copy.deepcopy(db.get(vbd, "VBD"))
        vdi = v["VDI"]
        if not v["empty"] and db.exists(vdi, "VDI") and v["type"] == "Disk":
            vdi = vdi_fn(ctx, vdi) if vdi_fn else _clone_vdi(ctx, vdi, sr if full else None)
        keep = {
            k: x
            for k, x in v.items()
            if k not in ("uuid", "VM", "VDI", "currently_attached", "current_operations", "metrics")
        }
        db.create("VBD", VM=new, VDI=vdi, currently_attached=False, **keep)
    for vif in rec["VIFs"]:
        v = copy.deepcopy(db.get(vif, "VIF"))
        keep = {
            k: x
            for k, x in v.items()
            if k not in ("uuid", "VM", "currently_attached", "current_operations", "MAC", "metrics")
        }
        u = new_uuid().replace("-", "")
        db.create(
            "VIF", VM=new, MAC="02:" + ":".join(u[i : i + 2] for i in range(0, 10, 2)), currently_attached=False, **keep
        )
    return new


@api("VM.clone", duration=2.0)
def vm_clone(ctx: Ctx, vm: str, new_name: str) -> str:
    vm_op_check(ctx, vm, "clone")
    return _copy_vm(ctx, vm, new_name, None, full=False)


@api("VM.copy", duration=10.0)
def vm_copy(ctx: Ctx, vm: str, new_name: str, sr: str) -> str:
    vm_op_check(ctx, vm, "copy")
    if sr != NULL_REF:
        ctx.db.get(sr, "SR")
    return _copy_vm(ctx, vm, new_name, sr, full=True)


@api("VM.provision", duration=2.0)
def vm_provision(ctx: Ctx, vm: str) -> None:
    dep, db = ctx.dep, ctx.db
    rec = vm_op_check(ctx, vm, "provision")
    spec = rec["other_config"].get("disks")
    if not spec:
        return
    try:
        root = ET.fromstring(spec)
    except ET.ParseError:
        raise ApiError("INVALID_VALUE", "disks", spec) from None
    default_sr = dep.pool(db)["default_SR"]
    for d in root.findall("disk"):
        sr_uuid = d.get("sr", "")
        sr = db.by_uuid("SR", sr_uuid) if sr_uuid else default_sr
        if not db.exists(sr, "SR"):
            raise ApiError("HANDLE_INVALID", "SR", sr)
        size = int(d.get("size", "0"))
        _sr_alloc(ctx, sr, size)
        vdi = db.create(
            "VDI",
            name_label=f"{rec['name_label']} {d.get('device', '0')}",
            SR=sr,
            virtual_size=size,
            physical_utilisation=size,
            type=d.get("type", "system") if d.get("type") in ctx.dm.enums.get("vdi_type", ()) else "system",
            sharable=False,
            read_only=False,
            other_config={},
            location=new_uuid(),
        )
        db.create(
            "VBD",
            VM=vm,
            VDI=vdi,
            userdevice=d.get("device", "0"),
            bootable=d.get("bootable") == "true",
            mode="RW",
            type="Disk",
            empty=False,
            other_config={"owner": "true"},
            qos_algorithm_type="",
            qos_algorithm_params={},
        )
    oc = dict(rec["other_config"])
    oc.pop("disks", None)
    db.set(vm, other_config=oc)


def _start(ctx: Ctx, vm: str, host: str | None, paused: bool, op: str) -> None:
    dep, db = ctx.dep, ctx.db
    vm_op_check(ctx, vm, op)
    if host is None:
        target = dep.pick_host(db, vm)
        if target is None:
            raise ApiError("NO_HOSTS_AVAILABLE")
    else:
        host_of(ctx, host)
        dep.check_can_boot(db, vm, host)
        target = host
    dep.boot_vm(db, vm, target, paused)


@api("VM.start", duration=vm_duration)
def vm_start(ctx: Ctx, vm: str, start_paused: bool, force: bool) -> None:
    _start(ctx, vm, None, start_paused, "start")


@api("VM.start_on", duration=vm_duration)
def vm_start_on(ctx: Ctx, vm: str, host: str, start_paused: bool, force: bool) -> None:
    _start(ctx, vm, host, start_paused, "start_on")


@api("VM.resume", duration=vm_duration)
def vm_resume(ctx: Ctx, vm: str, start_paused: bool, force: bool) -> None:
    _start(ctx, vm, None, start_paused, "resume")


@api("VM.resume_on", duration=vm_duration)
def vm_resume_on(ctx: Ctx, vm: str, host: str, start_paused: bool, force: bool) -> None:
    _start(ctx, vm, host, start_paused, "resume_on")


def _halt(ctx: Ctx, vm: str, op: str, state: str = "Halted") -> None:
    dep, db = ctx.dep, ctx.db
    rec = vm_op_check(ctx, vm, op)
    if rec["is_control_domain"]:
        raise ApiError("OPERATION_NOT_ALLOWED", "Cannot shut down a control domain")
    host = rec["resident_on"]
    if host != NULL_REF:
        assert_contact(ctx, host)
    dep.force_halt(db, vm)
    if state != "Halted":
        db.set(vm, power_state=state)
    if state == "Halted":
        db.set(vm, ha_always_run=False)  # a user shutdown ends HA protection of the run


@api("VM.clean_shutdown", duration=vm_duration)
def vm_clean_shutdown(ctx: Ctx, vm: str) -> None:
    _halt(ctx, vm, "clean_shutdown")


@api("VM.hard_shutdown", duration=0.5)
def vm_hard_shutdown(ctx: Ctx, vm: str) -> None:
    _halt(ctx, vm, "hard_shutdown")


@api("VM.shutdown", duration=vm_duration)
def vm_shutdown(ctx: Ctx, vm: str) -> None:
    _halt(ctx, vm, "shutdown")


@api("VM.suspend", duration=vm_duration)
def vm_suspend(ctx: Ctx, vm: str) -> None:
    _halt(ctx, vm, "suspend", state="Suspended")


def _reboot(ctx: Ctx, vm: str, op: str) -> None:
    dep, db = ctx.dep, ctx.db
    rec = vm_op_check(ctx, vm, op)
    assert_contact(ctx, rec["resident_on"])
    host = rec["resident_on"]
    db.set(vm, power_state="Running", domid=dep.next_domid(dep.host_by_ref(host)))
    dep.vm_metrics_running(db, vm)
    dep.guests.booted(vm, dep.clock.now())


@api("VM.clean_reboot", duration=vm_duration)
def vm_clean_reboot(ctx: Ctx, vm: str) -> None:
    _reboot(ctx, vm, "clean_reboot")


@api("VM.hard_reboot", duration=1.0)
def vm_hard_reboot(ctx: Ctx, vm: str) -> None:
    _reboot(ctx, vm, "hard_reboot")


@api("VM.pause", duration=0.2)
def vm_pause(ctx: Ctx, vm: str) -> None:
    rec = vm_op_check(ctx, vm, "pause")
    assert_contact(ctx, rec["resident_on"])
    ctx.db.set(vm, power_state="Paused")
    ctx.dep.guests.paused(vm, ctx.dep.clock.now())
    if ctx.db.exists(rec["metrics"]):
        ctx.db.set(rec["metrics"], state=["paused"])


@api("VM.unpause", duration=0.2)
def vm_unpause(ctx: Ctx, vm: str) -> None:
    rec = vm_op_check(ctx, vm, "unpause")
    assert_contact(ctx, rec["resident_on"])
    ctx.db.set(vm, power_state="Running")
    ctx.dep.guests.resumed(vm, ctx.dep.clock.now())
    if ctx.db.exists(rec["metrics"]):
        ctx.db.set(rec["metrics"], state=["running"])


@api("VM.power_state_reset")
def vm_power_state_reset(ctx: Ctx, vm: str) -> None:
    dep, db = ctx.dep, ctx.db
    rec = db.get(vm, "VM")
    host = rec["resident_on"]
    if (
        host != NULL_REF
        and rec["power_state"] in ("Running", "Paused")
        and dep.reachable(dep.master_of(db), dep.host_by_ref(host))
        and dep.host_live(db, host)
    ):
        raise ApiError("VM_BAD_POWER_STATE", vm, "halted", LOWER[rec["power_state"]])
    dep.force_halt(db, vm)


def _migrate(ctx: Ctx, vm: str, host: str) -> None:
    dep, db = ctx.dep, ctx.db
    rec = db.get(vm, "VM")
    src = rec["resident_on"]
    if host != src:
        dep.check_can_boot(db, vm, host)
    db.set(vm, resident_on=host, domid=dep.next_domid(dep.host_by_ref(host)))
    if host != src:
        dep.guests.migrated(vm, dep.clock.now())  # the switch-over: paused, then running on `host`
    if db.exists(rec["metrics"]):
        db.set(rec["metrics"], last_updated=dep.now())
    if src != NULL_REF and db.exists(src, "host"):
        dep.refresh_memory(db, src)
    dep.refresh_memory(db, host)


@api("VM.pool_migrate", duration=migrate_duration)
def vm_pool_migrate(ctx: Ctx, vm: str, host: str, options: dict[str, str]) -> None:
    rec = vm_op_check(ctx, vm, "pool_migrate")
    host_of(ctx, host)
    assert_contact(ctx, rec["resident_on"])
    _migrate(ctx, vm, host)


@api("VM.assert_can_boot_here")
def vm_assert_can_boot_here(ctx: Ctx, vm: str, host: str) -> None:
    ctx.db.get(vm, "VM")
    host_of(ctx, host)
    ctx.dep.check_can_boot(ctx.db, vm, host)


@api("VM.get_possible_hosts")
def vm_get_possible_hosts(ctx: Ctx, vm: str) -> list[str]:
    dep, db = ctx.dep, ctx.db
    db.get(vm, "VM")
    out = []
    for h in dep.members(db):
        try:
            dep.check_can_boot(db, vm, h.ref)
            out.append(h.ref)
        except ApiError:
            pass
    return out


@api("VM.get_allowed_VBD_devices")
def vm_allowed_vbd(ctx: Ctx, vm: str) -> list[str]:
    used = {ctx.db.get(v, "VBD")["userdevice"] for v in ctx.db.get(vm, "VM")["VBDs"]}
    return [str(n) for n in range(16) if str(n) not in used]


@api("VM.get_allowed_VIF_devices")
def vm_allowed_vif(ctx: Ctx, vm: str) -> list[str]:
    used = {ctx.db.get(v, "VIF")["device"] for v in ctx.db.get(vm, "VM")["VIFs"]}
    return [str(n) for n in range(7) if str(n) not in used]


@api("VM.compute_memory_overhead")
def vm_compute_memory_overhead(ctx: Ctx, vm: str) -> int:
    return int(ctx.db.get(vm, "VM")["memory_overhead"])


@api("VM.set_ha_restart_priority")
def vm_set_ha_restart_priority(ctx: Ctx, vm: str, value: str) -> None:
    rec = ctx.db.get(vm, "VM")
    if value not in ("restart", "best-effort", ""):
        raise ApiError("INVALID_VALUE", "ha_restart_priority", value)
    ctx.db.set(vm, ha_restart_priority=value)
    if rec["power_state"] == "Running":
        ctx.db.set(vm, ha_always_run=value == "restart")


@api("VM.set_ha_always_run")
def vm_set_ha_always_run(ctx: Ctx, vm: str, value: bool) -> None:
    vm_set_ha_restart_priority(ctx, vm, "restart" if value else "")


def _vm_setter(field: str, halted_only: bool = False):
    def fn(ctx: Ctx, vm: str, value: Any) -> None:
        rec = ctx.db.get(vm, "VM")
        if halted_only and rec["power_state"] != "Halted":
            raise ApiError("VM_BAD_POWER_STATE", vm, "halted", LOWER[rec["power_state"]])
        if isinstance(value, int) and not isinstance(value, bool) and value < 0:
            raise ApiError("INVALID_VALUE", field, value)
        ctx.db.set(vm, **{field: value})
        if field.startswith(("memory_", "VCPUs_", "HVM_shadow", "domain_type")):
            ctx.dep.update_overhead(ctx.db, vm)

    return fn


for _f, _halted in (
    ("order", False),
    ("start_delay", False),
    ("shutdown_delay", False),
    ("VCPUs_max", True),
    ("VCPUs_at_startup", True),
    ("memory_static_max", True),
    ("memory_static_min", True),
    ("memory_dynamic_max", False),
    ("memory_dynamic_min", False),
    ("suspend_VDI", False),
    ("domain_type", True),
    ("HVM_boot_policy", True),
    ("HVM_shadow_multiplier", True),
    ("actions_after_crash", False),
    ("NVRAM", True),
    ("has_vendor_device", True),
    ("appliance", False),
    ("snapshot_schedule", False),
    ("bios_strings", True),
):
    api(f"VM.set_{_f}")(_vm_setter(_f, _halted))


@api("VM.set_memory")
def vm_set_memory(ctx: Ctx, vm: str, value: int) -> None:
    rec = ctx.db.get(vm, "VM")
    if rec["power_state"] != "Halted":
        raise ApiError("VM_BAD_POWER_STATE", vm, "halted", LOWER[rec["power_state"]])
    ctx.db.set(vm, memory_static_max=value, memory_dynamic_max=value, memory_dynamic_min=value, memory_target=value)
    ctx.dep.update_overhead(ctx.db, vm)


@api("VM.set_memory_limits")
def vm_set_memory_limits(ctx: Ctx, vm: str, smin: int, smax: int, dmin: int, dmax: int) -> None:
    rec = ctx.db.get(vm, "VM")
    if not (smin <= dmin <= dmax <= smax):
        raise ApiError(
            "MEMORY_CONSTRAINT_VIOLATION",
            "Memory limits must satisfy: static_min <= dynamic_min <= dynamic_max <= static_max",
        )
    if rec["power_state"] != "Halted":
        raise ApiError("VM_BAD_POWER_STATE", vm, "halted", LOWER[rec["power_state"]])
    ctx.db.set(vm, memory_static_min=smin, memory_static_max=smax, memory_dynamic_min=dmin, memory_dynamic_max=dmax)
    ctx.dep.update_overhead(ctx.db, vm)


@api("VM.set_memory_dynamic_range")
def vm_set_memory_dynamic_range(ctx: Ctx, vm: str, lo: int, hi: int) -> None:
    ctx.db.get(vm, "VM")
    ctx.db.set(vm, memory_dynamic_min=lo, memory_dynamic_max=hi)


@api("VM.set_memory_static_range")
def vm_set_memory_static_range(ctx: Ctx, vm: str, lo: int, hi: int) -> None:
    rec = ctx.db.get(vm, "VM")
    if rec["power_state"] != "Halted":
        raise ApiError("VM_BAD_POWER_STATE", vm, "halted", LOWER[rec["power_state"]])
    ctx.db.set(vm, memory_static_min=lo, memory_static_max=hi)
    ctx.dep.update_overhead(ctx.db, vm)


@api("VM.set_is_a_template")
def vm_set_is_a_template(ctx: Ctx, vm: str, value: bool) -> None:
    rec = ctx.db.get(vm, "VM")
    if value and rec["power_state"] != "Halted":
        raise ApiError("VM_BAD_POWER_STATE", vm, "halted", LOWER[rec["power_state"]])
    ctx.db.set(vm, is_a_template=value)


@api("VDI.snapshot", duration=1.0)
def vdi_snapshot(ctx: Ctx, vdi: str, driver_params: dict | None = None) -> str:
    snap = _clone_vdi(ctx, vdi)
    ctx.db.set(snap, is_a_snapshot=True, snapshot_of=vdi, snapshot_time=ctx.dep.now(), read_only=True)
    return snap


@api("VM.snapshot", duration=2.0)
def vm_snapshot(ctx: Ctx, vm: str, new_name: str, ignore_vdis: list[str] | None = None) -> str:
    """Disk-only snapshot: a halted template marked is_a_snapshot, VDIs snapshotted."""
    db = ctx.db
    rec = vm_op_check(ctx, vm, "snapshot")
    ignore = set(ignore_vdis or [])
    keep_vbds = [v for v in rec["VBDs"] if db.get(v, "VBD")["VDI"] not in ignore]
    snap = _copy_vm(ctx, vm, new_name, None, full=False, vbds=keep_vbds, vdi_fn=vdi_snapshot)
    db.set(
        snap,
        is_a_snapshot=True,
        is_a_template=True,
        snapshot_of=vm,
        snapshot_time=ctx.dep.now(),
        parent=NULL_REF,
        ha_always_run=False,
        ha_restart_priority="",
    )
    return snap


@api("VM.revert", duration=2.0)
def vm_revert(ctx: Ctx, snapshot: str) -> None:
    dep, db = ctx.dep, ctx.db
    srec = db.get(snapshot, "VM")
    vm = srec["snapshot_of"]
    if not srec["is_a_snapshot"] or not db.exists(vm, "VM"):
        raise ApiError("VM_REVERT_FAILED", snapshot, vm)
    if db.get(vm, "VM")["power_state"] != "Halted":
        dep.force_halt(db, vm)
    for vbd in list(db.get(vm, "VM")["VBDs"]):
        if db.get(vbd, "VBD")["type"] == "Disk":
            db.destroy(vbd)
    for vbd in srec["VBDs"]:
        v = copy.deepcopy(db.get(vbd, "VBD"))
        vdi = _clone_vdi(ctx, v["VDI"]) if db.exists(v["VDI"], "VDI") else v["VDI"]
        if db.exists(vdi, "VDI"):
            db.set(vdi, is_a_snapshot=False, snapshot_of=NULL_REF, read_only=False)
        keep = {
            k: x
            for k, x in v.items()
            if k not in ("uuid", "VM", "VDI", "currently_attached", "current_operations", "metrics")
        }
        db.create("VBD", VM=vm, VDI=vdi, currently_attached=False, **keep)
    for field in (
        "memory_static_max",
        "memory_dynamic_max",
        "memory_dynamic_min",
        "memory_static_min",
        "VCPUs_max",
        "VCPUs_at_startup",
        "platform",
    ):
        db.set(vm, **{field: copy.deepcopy(srec[field])})
    dep.update_overhead(db, vm)
