"""VM.*: lifecycle (create/destroy/start/shutdown/reboot/pause), migration, memory, VCPUs, HA settings (templates, clones and snapshots: vm_clone.py)."""

from __future__ import annotations

from typing import Any

from ..calls import Ctx, Handlers
from ..generic import ctor_fields
from ..model import NULL_REF, ApiError
from .common import ALLOWED_STATES, LOWER, assert_contact, host_of, migrate_duration, vm_duration, vm_op_check

HANDLERS = Handlers("vm")


@HANDLERS.api("VM.create")
def vm_create(ctx: Ctx, record: dict[str, Any]) -> str:
    dep, db = ctx.dep, ctx.db
    f = ctor_fields(ctx.dm, "VM", record)
    for k in ("is_control_domain",):
        f.pop(k, None)
    metrics = db.create("VM_metrics", install_time=dep.now(), last_updated=dep.now())
    f.update(metrics=metrics, power_state="Halted", domid=-1)
    if f.get("domain_type", "unspecified") == "unspecified":  # a client that only knows HVM_boot_policy
        f["domain_type"] = derive_domain_type(f.get("HVM_boot_policy", ""))
    if not f.get("memory_target"):
        f["memory_target"] = f["memory_dynamic_max"]
    vm = db.create("VM", **{k: v for k, v in f.items() if k in ctx.dm.cls("VM").fields})
    dep.update_overhead(db, vm)
    return vm


def derive_domain_type(hvm_boot_policy: str) -> str:
    """xapi's rule for clients that set only the older HVM_boot_policy: empty means PV."""
    return "pv" if hvm_boot_policy == "" else "hvm"


def derive_hvm_boot_policy(domain_type: str) -> str:
    return "BIOS order" if domain_type == "hvm" else ""


@HANDLERS.api("VM.destroy")
def vm_destroy(ctx: Ctx, vm: str) -> None:
    db = ctx.db
    rec = db.get(vm, "VM")
    if rec["is_control_domain"]:
        raise ApiError("OPERATION_NOT_ALLOWED", "Cannot destroy a control domain")
    if rec["power_state"] not in ALLOWED_STATES["destroy"]:
        raise ApiError("VM_BAD_POWER_STATE", vm, "halted, suspended", LOWER[rec["power_state"]])
    vm_op_check(ctx, vm, "destroy")
    for vbd in list(rec["VBDs"]):
        db.destroy(vbd)
    for vif in list(rec["VIFs"]):
        db.destroy(vif)
    if db.exists(rec["metrics"]):
        db.destroy(rec["metrics"])
    ctx.dep.delete_guest_metrics(db, vm)
    db.destroy(vm)


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


@HANDLERS.api("VM.start", duration=vm_duration)
def vm_start(ctx: Ctx, vm: str, start_paused: bool, force: bool) -> None:
    _start(ctx, vm, None, start_paused, "start")


@HANDLERS.api("VM.start_on", duration=vm_duration)
def vm_start_on(ctx: Ctx, vm: str, host: str, start_paused: bool, force: bool) -> None:
    _start(ctx, vm, host, start_paused, "start_on")


@HANDLERS.api("VM.resume", duration=vm_duration)
def vm_resume(ctx: Ctx, vm: str, start_paused: bool, force: bool) -> None:
    _start(ctx, vm, None, start_paused, "resume")


@HANDLERS.api("VM.resume_on", duration=vm_duration)
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


@HANDLERS.api("VM.clean_shutdown", duration=vm_duration)
def vm_clean_shutdown(ctx: Ctx, vm: str) -> None:
    _halt(ctx, vm, "clean_shutdown")


@HANDLERS.api("VM.hard_shutdown", duration=0.5)
def vm_hard_shutdown(ctx: Ctx, vm: str) -> None:
    _halt(ctx, vm, "hard_shutdown")


@HANDLERS.api("VM.shutdown", duration=vm_duration)
def vm_shutdown(ctx: Ctx, vm: str) -> None:
    _halt(ctx, vm, "shutdown")


@HANDLERS.api("VM.suspend", duration=vm_duration)
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
    dep.agent_domain_started(db, vm)  # a new domain: its start time is newer than the metrics


@HANDLERS.api("VM.clean_reboot", duration=vm_duration)
def vm_clean_reboot(ctx: Ctx, vm: str) -> None:
    _reboot(ctx, vm, "clean_reboot")


@HANDLERS.api("VM.hard_reboot", duration=1.0)
def vm_hard_reboot(ctx: Ctx, vm: str) -> None:
    _reboot(ctx, vm, "hard_reboot")


@HANDLERS.api("VM.pause", duration=0.2)
def vm_pause(ctx: Ctx, vm: str) -> None:
    rec = vm_op_check(ctx, vm, "pause")
    assert_contact(ctx, rec["resident_on"])
    ctx.db.set(vm, power_state="Paused")
    ctx.dep.guests.paused(vm, ctx.dep.clock.now())
    if ctx.db.exists(rec["metrics"]):
        ctx.db.set(rec["metrics"], state=["paused"])


@HANDLERS.api("VM.unpause", duration=0.2)
def vm_unpause(ctx: Ctx, vm: str) -> None:
    rec = vm_op_check(ctx, vm, "unpause")
    assert_contact(ctx, rec["resident_on"])
    ctx.db.set(vm, power_state="Running")
    ctx.dep.guests.resumed(vm, ctx.dep.clock.now())
    if ctx.db.exists(rec["metrics"]):
        ctx.db.set(rec["metrics"], state=["running"])


@HANDLERS.api("VM.power_state_reset")
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
        dep.agent_migrated(db, vm)  # the agent reports again from the new host
    if db.exists(rec["metrics"]):
        db.set(rec["metrics"], last_updated=dep.now())
    if src != NULL_REF and db.exists(src, "host"):
        dep.refresh_memory(db, src)
    dep.refresh_memory(db, host)


@HANDLERS.api("VM.pool_migrate", duration=migrate_duration)
def vm_pool_migrate(ctx: Ctx, vm: str, host: str, options: dict[str, str]) -> None:
    rec = vm_op_check(ctx, vm, "pool_migrate")
    host_of(ctx, host)
    assert_contact(ctx, rec["resident_on"])
    _migrate(ctx, vm, host)


@HANDLERS.api("VM.assert_can_boot_here")
def vm_assert_can_boot_here(ctx: Ctx, vm: str, host: str) -> None:
    ctx.db.get(vm, "VM")
    host_of(ctx, host)
    ctx.dep.check_can_boot(ctx.db, vm, host)


@HANDLERS.api("VM.get_possible_hosts")
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


@HANDLERS.api("VM.get_allowed_VBD_devices")
def vm_allowed_vbd(ctx: Ctx, vm: str) -> list[str]:
    used = {ctx.db.get(v, "VBD")["userdevice"] for v in ctx.db.get(vm, "VM")["VBDs"]}
    return [str(n) for n in range(16) if str(n) not in used]


@HANDLERS.api("VM.get_allowed_VIF_devices")
def vm_allowed_vif(ctx: Ctx, vm: str) -> list[str]:
    used = {ctx.db.get(v, "VIF")["device"] for v in ctx.db.get(vm, "VM")["VIFs"]}
    return [str(n) for n in range(7) if str(n) not in used]


@HANDLERS.api("VM.compute_memory_overhead")
def vm_compute_memory_overhead(ctx: Ctx, vm: str) -> int:
    return int(ctx.db.get(vm, "VM")["memory_overhead"])


@HANDLERS.api("VM.set_ha_restart_priority")
def vm_set_ha_restart_priority(ctx: Ctx, vm: str, value: str) -> None:
    rec = ctx.db.get(vm, "VM")
    if value not in ("restart", "best-effort", ""):
        raise ApiError("INVALID_VALUE", "ha_restart_priority", value)
    ctx.db.set(vm, ha_restart_priority=value)
    if rec["power_state"] == "Running":
        ctx.db.set(vm, ha_always_run=value == "restart")


@HANDLERS.api("VM.set_ha_always_run")
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
    ("memory_static_max", True),
    ("memory_static_min", True),
    ("memory_dynamic_max", False),
    ("memory_dynamic_min", False),
    ("suspend_VDI", False),
    ("HVM_shadow_multiplier", True),
    ("actions_after_crash", False),
    ("NVRAM", True),
    ("has_vendor_device", True),
    ("appliance", False),
    ("snapshot_schedule", False),
    ("bios_strings", True),
):
    HANDLERS.api(f"VM.set_{_f}")(_vm_setter(_f, _halted))


def _set_vcpus(ctx: Ctx, vm: str, value: int, field: str) -> None:
    """xapi_vm.set_VCPUs_max / set_VCPUs_at_startup: halted (templates too), 0 < at_startup <= max."""
    rec = vm_op_check(ctx, vm, "changing_VCPUs")
    if rec["is_control_domain"] and rec["domid"] == 0:
        raise ApiError("OPERATION_NOT_ALLOWED", f"set_{field} is not allowed on dom0")
    vmax = value if field == "VCPUs_max" else int(rec["VCPUs_max"])
    at_startup = value if field == "VCPUs_at_startup" else int(rec["VCPUs_at_startup"])
    if value < 1 or at_startup > vmax:
        raise ApiError("INVALID_VALUE", "VCPU values must satisfy: 0 < VCPUs_at_startup ≤ VCPUs_max", value)
    ctx.db.set(vm, **{field: value})
    ctx.dep.update_overhead(ctx.db, vm)


@HANDLERS.api("VM.set_VCPUs_max")
def vm_set_vcpus_max(ctx: Ctx, vm: str, value: int) -> None:
    _set_vcpus(ctx, vm, value, "VCPUs_max")


@HANDLERS.api("VM.set_VCPUs_at_startup")
def vm_set_vcpus_at_startup(ctx: Ctx, vm: str, value: int) -> None:
    _set_vcpus(ctx, vm, value, "VCPUs_at_startup")


@HANDLERS.api("VM.set_domain_type")
def vm_set_domain_type(ctx: Ctx, vm: str, value: str) -> None:
    """As xapi: the boot policy follows the domain type (and `unspecified` is refused)."""
    if value == "unspecified":
        raise ApiError("INVALID_VALUE", "domain_type", value)
    _halted_for(ctx, vm)
    ctx.db.set(vm, domain_type=value, HVM_boot_policy=derive_hvm_boot_policy(value))
    ctx.dep.update_overhead(ctx.db, vm)


@HANDLERS.api("VM.set_HVM_boot_policy")
def vm_set_hvm_boot_policy(ctx: Ctx, vm: str, value: str) -> None:
    """As xapi: setting the older field sets the domain type it implies."""
    _halted_for(ctx, vm)
    ctx.db.set(vm, domain_type=derive_domain_type(value), HVM_boot_policy=value)
    ctx.dep.update_overhead(ctx.db, vm)


def _halted_for(ctx: Ctx, vm: str) -> None:
    rec = ctx.db.get(vm, "VM")
    if rec["power_state"] != "Halted":
        raise ApiError("VM_BAD_POWER_STATE", vm, "halted", LOWER[rec["power_state"]])


@HANDLERS.api("VM.set_memory")
def vm_set_memory(ctx: Ctx, vm: str, value: int) -> None:
    rec = ctx.db.get(vm, "VM")
    if rec["power_state"] != "Halted":
        raise ApiError("VM_BAD_POWER_STATE", vm, "halted", LOWER[rec["power_state"]])
    ctx.db.set(vm, memory_static_max=value, memory_dynamic_max=value, memory_dynamic_min=value, memory_target=value)
    ctx.dep.update_overhead(ctx.db, vm)


@HANDLERS.api("VM.set_memory_limits")
def vm_set_memory_limits(ctx: Ctx, vm: str, smin: int, smax: int, dmin: int, dmax: int) -> None:
    """xapi_vm.set_memory_limits: halted (templates allow it too), limits in order."""
    vm_op_check(ctx, vm, "changing_memory_limits")
    if not (smin <= dmin <= dmax <= smax):
        raise ApiError(
            "MEMORY_CONSTRAINT_VIOLATION",
            "Memory limits must satisfy: static_min <= dynamic_min <= dynamic_max <= static_max",
        )
    ctx.db.set(vm, memory_static_min=smin, memory_static_max=smax, memory_dynamic_min=dmin, memory_dynamic_max=dmax)
    ctx.dep.update_overhead(ctx.db, vm)


@HANDLERS.api("VM.set_memory_dynamic_range")
def vm_set_memory_dynamic_range(ctx: Ctx, vm: str, lo: int, hi: int) -> None:
    ctx.db.get(vm, "VM")
    ctx.db.set(vm, memory_dynamic_min=lo, memory_dynamic_max=hi)


@HANDLERS.api("VM.set_memory_static_range")
def vm_set_memory_static_range(ctx: Ctx, vm: str, lo: int, hi: int) -> None:
    rec = ctx.db.get(vm, "VM")
    if rec["power_state"] != "Halted":
        raise ApiError("VM_BAD_POWER_STATE", vm, "halted", LOWER[rec["power_state"]])
    ctx.db.set(vm, memory_static_min=lo, memory_static_max=hi)
    ctx.dep.update_overhead(ctx.db, vm)
