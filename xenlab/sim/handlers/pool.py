"""pool.*: join (with homogeneity checks), eject, master designation."""

from __future__ import annotations

from typing import Any

from ..calls import Ctx, Handlers
from ..deployment import Deployment
from ..hosts import SimHost
from ..model import ApiError, Database
from .common import assert_contact, host_of

HANDLERS = Handlers("pool")


@HANDLERS.api("pool.join", duration=10.0)
def pool_join(ctx: Ctx, master_address: str, user: str, password: str) -> None:
    _join(ctx, master_address, user, password, force=False)


@HANDLERS.api("pool.join_force", duration=10.0)
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


@HANDLERS.api("pool.eject", duration=10.0)
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


@HANDLERS.api("pool.designate_new_master", duration=5.0)
def pool_designate_new_master(ctx: Ctx, host: str) -> None:
    dep, db = ctx.dep, ctx.db
    h = host_of(ctx, host)
    if dep.pool(db)["ha_enabled"]:
        raise ApiError("HA_IS_ENABLED")
    if dep.is_master(h):
        return
    assert_contact(ctx, host)
    db.set(dep.pool_ref(db), master=host)


@HANDLERS.api("pool.sync_database")
def pool_sync_database(ctx: Ctx) -> None:
    return None
