"""host.*: enable/disable, evacuate (planning and moves), power, servertime, declare_dead."""

from __future__ import annotations

from typing import Any

from ..calls import Ctx, Handlers
from ..model import NULL_REF, ApiError
from .common import host_of
from .vm import _migrate

HANDLERS = Handlers("host")


@HANDLERS.api("host.disable")
def host_disable(ctx: Ctx, host: str, auto_enable: bool = True) -> None:
    host_of(ctx, host)
    ctx.db.set(host, enabled=False)


@HANDLERS.api("host.enable")
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


@HANDLERS.api("host.evacuate", duration=lambda ctx, a: 2.0 * len(ctx.db.get(a[0], "host")["resident_VMs"]))
def host_evacuate(ctx: Ctx, host: str, network: str = NULL_REF, batch: int = 0) -> None:
    host_of(ctx, host)
    plan = evacuation_plan(ctx, host)
    for v, p in plan.items():
        if isinstance(p, tuple):
            raise ApiError(p[0], *p[1])
    for v, target in plan.items():
        _migrate(ctx, v, target)


@HANDLERS.api("host.get_vms_which_prevent_evacuation")
def host_vms_preventing(ctx: Ctx, host: str) -> dict[str, list[str]]:
    host_of(ctx, host)
    return {v: [p[0], *p[1]] for v, p in evacuation_plan(ctx, host).items() if isinstance(p, tuple)}


@HANDLERS.api("host.assert_can_evacuate")
def host_assert_can_evacuate(ctx: Ctx, host: str) -> None:
    host_of(ctx, host)
    errs = [",".join([p[0], *p[1]]) for p in evacuation_plan(ctx, host).values() if isinstance(p, tuple)]
    if errs:
        raise ApiError("CANNOT_EVACUATE_HOST", "|".join(errs))


@HANDLERS.api("host.compute_free_memory")
def host_compute_free_memory(ctx: Ctx, host: str) -> int:
    host_of(ctx, host)
    return ctx.dep.host_free_memory(ctx.db, host)


@HANDLERS.api("host.compute_memory_overhead")
def host_compute_memory_overhead(ctx: Ctx, host: str) -> int:
    return int(ctx.db.get(host, "host")["memory_overhead"])


@HANDLERS.api("host.get_servertime")
def host_get_servertime(ctx: Ctx, host: str):
    host_of(ctx, host)
    return ctx.dep.now()


@HANDLERS.api("host.get_server_localtime")
def host_get_server_localtime(ctx: Ctx, host: str):
    host_of(ctx, host)
    return ctx.dep.now()


@HANDLERS.api("host.list_methods")
def host_list_methods(ctx: Ctx) -> list[str]:
    raise ApiError("NOT_IMPLEMENTED", "list_method")  # xapi_host.ml answers exactly this


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


@HANDLERS.api("host.shutdown", duration=30.0)
def host_shutdown(ctx: Ctx, host: str) -> None:
    _host_down(ctx, host, reboot=False)


@HANDLERS.api("host.reboot", duration=60.0)
def host_reboot(ctx: Ctx, host: str) -> None:
    _host_down(ctx, host, reboot=True)


@HANDLERS.api("host.power_on", duration=60.0)
def host_power_on(ctx: Ctx, host: str) -> None:
    h = host_of(ctx, host)
    if ctx.dep.host_live(ctx.db, host) and h.alive:
        raise ApiError("HOST_IS_LIVE", host)
    ctx.dep.heal(h.index)


@HANDLERS.api("host.declare_dead")
def host_declare_dead(ctx: Ctx, host: str) -> None:
    dep, db = ctx.dep, ctx.db
    h = host_of(ctx, host)
    if dep.reachable(dep.master_of(db), h):
        raise ApiError("HOST_IS_LIVE", host)
    for vm in list(db.get(host, "host")["resident_VMs"]):
        if not db.get(vm, "VM")["is_control_domain"]:
            dep.force_halt(db, vm)
    db.set(db.get(host, "host")["metrics"], live=False)
