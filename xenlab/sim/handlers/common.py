"""Helpers the handler modules share: VM operation checks, host lookups, durations."""

from __future__ import annotations

from typing import Any

from ..calls import Ctx
from ..hosts import SNAPSHOT_OPS, VM_OP_STATES, GiB, SimHost, template_allows
from ..model import ApiError

LOWER = {"Halted": "halted", "Paused": "paused", "Running": "running", "Suspended": "suspended"}

# xapi's allowed power states per VM operation, in the order it reports them.
ALLOWED_STATES = {op: list(states) for op, states in VM_OP_STATES.items()}

SR_TYPES = {"nfs", "ext", "lvm", "lvmoiscsi", "lvmohba", "iso", "udev", "smb", "file", "dummy", "xfs", "zfs"}
SHARED_SR_TYPES = {"nfs", "lvmoiscsi", "lvmohba", "iso", "smb"}


def vm_op_check(ctx: Ctx, vm: str, op: str) -> dict[str, Any]:
    """xapi_vm_lifecycle's checks, in its order: snapshot, template, control domain, power state, blocked."""
    rec = ctx.db.get(vm, "VM")
    if rec["is_a_snapshot"] and op not in SNAPSHOT_OPS:
        raise ApiError("VM_IS_SNAPSHOT", vm, op)
    if rec["is_a_template"] and not rec["is_a_snapshot"] and not template_allows(rec, op):
        raise ApiError("VM_IS_TEMPLATE", vm, op)
    if rec["is_control_domain"] and op not in ("clean_reboot", "clean_shutdown", "hard_reboot", "hard_shutdown"):
        raise ApiError("OPERATION_NOT_ALLOWED", f"Operation {op} not allowed on a control domain")
    allowed = ALLOWED_STATES[op]
    if rec["power_state"] not in allowed:
        raise ApiError("VM_BAD_POWER_STATE", vm, ", ".join(LOWER[s] for s in allowed), LOWER[rec["power_state"]])
    if rec["blocked_operations"].get(op):
        raise ApiError("OPERATION_BLOCKED", vm, rec["blocked_operations"][op])
    return rec


def assert_hotplug(ctx: Ctx, vm: str, kind: str) -> None:
    """xapi_vbd_helpers / xapi_vif_helpers: a device plugs into a running VM only, and into an
    HVM guest only once its PV drivers are up (or it claims can_use_hotplug_<kind>)."""
    db = ctx.db
    rec = db.get(vm, "VM")
    if rec["power_state"] != "Running":
        raise ApiError("VM_BAD_POWER_STATE", vm, "running", LOWER[rec["power_state"]])
    if rec["domain_type"] != "hvm":
        return
    gm = rec["guest_metrics"]
    gmr = db.get(gm, "VM_guest_metrics") if db.exists(gm, "VM_guest_metrics") else None
    claim = gmr[f"can_use_hotplug_{kind}"] if gmr else "unspecified"
    if claim == "no":
        raise ApiError("OPERATION_NOT_ALLOWED", f"VM states it does not support {kind.upper()} hotplug.")
    if claim == "yes" or (gmr and gmr["PV_drivers_detected"]):
        return
    if not (gmr and gmr["PV_drivers_version"]):
        raise ApiError("VM_MISSING_PV_DRIVERS", vm)


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
