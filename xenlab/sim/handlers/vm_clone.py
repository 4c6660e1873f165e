"""VM templates, clones and snapshots: VM.clone/copy/provision, set_is_a_template, VM.snapshot/revert, VDI.snapshot.

What xapi_vm_clone.ml, xapi_vm.provision (xapi_templates.ml) and xapi_vm_snapshot.ml do."""

from __future__ import annotations

import copy
import xml.etree.ElementTree as ET
from typing import Any

from ..calls import Ctx, Handlers
from ..model import NULL_REF, ApiError, new_uuid
from .common import vm_op_check
from .storage import _clone_vdi, _sr_alloc, vdi_destroy

HANDLERS = Handlers("vm_clone")

def _copy_vm(
    ctx: Ctx, vm: str, new_name: str, sr: str | None, full: bool, vbds: list[str] | None = None, vdi_fn=None,
    snapshot: bool = False,
) -> str:
    """xapi's copy_vm_record (xapi_vm_clone.ml): a new top-level VM with a copy of the record."""
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
        "suspend_VDI",
    }
    fields = {k: v for k, v in rec.items() if k not in skip}
    metrics = db.create("VM_metrics", install_time=dep.now(), last_updated=dep.now())
    fields.update(
        name_label=new_name,
        metrics=metrics,
        guest_metrics=dep.copy_guest_metrics(db, vm),
        power_state="Halted",
        domid=-1,
        is_default_template=False,
        other_config=clone_other_config(rec, snapshot),
        ha_always_run=False,
        start_delay=0,
        shutdown_delay=0,
        order=0,
    )
    new = db.create("VM", **{k: v for k, v in fields.items() if k in ctx.dm.cls("VM").fields})
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
        if v["type"] == "Disk":  # CA-58405: the new VM owns its cloned disks
            keep["other_config"] = {"owner": "", **keep["other_config"]}
        db.create("VBD", VM=new, VDI=vdi, currently_attached=False, **keep)
    for vif in rec["VIFs"]:
        v = copy.deepcopy(db.get(vif, "VIF"))
        keep = {
            k: x
            for k, x in v.items()
            if k not in ("uuid", "VM", "currently_attached", "current_operations", "MAC", "metrics")
        }
        u = new_uuid().replace("-", "")
        mac = v["MAC"] if snapshot else "02:" + ":".join(u[i : i + 2] for i in range(0, 10, 2))
        db.create("VIF", VM=new, MAC=mac, currently_attached=False, **keep)
    return new


def clone_other_config(rec: dict[str, Any], snapshot: bool) -> dict[str, str]:
    """What xapi's copy_vm_record writes into the new VM's other_config: a fresh mac_seed (snapshots
    keep theirs), no default_template or xensource_internal, and the template's name as
    base_template_name when a template is cloned (unless already recorded)."""
    oc = dict(rec["other_config"])
    if not snapshot:
        oc["mac_seed"] = new_uuid()
    for key in ("default_template", "xensource_internal"):
        oc.pop(key, None)
    if rec["is_a_template"] and "base_template_name" not in oc:
        oc["base_template_name"] = rec["name_label"]
    return oc


@HANDLERS.api("VM.clone", duration=2.0)
def vm_clone(ctx: Ctx, vm: str, new_name: str) -> str:
    vm_op_check(ctx, vm, "clone")
    return _copy_vm(ctx, vm, new_name, None, full=False)


@HANDLERS.api("VM.copy", duration=10.0)
def vm_copy(ctx: Ctx, vm: str, new_name: str, sr: str) -> str:
    vm_op_check(ctx, vm, "copy")
    if sr != NULL_REF:
        ctx.db.get(sr, "SR")
    return _copy_vm(ctx, vm, new_name, sr, full=True)


@HANDLERS.api("VM.provision", duration=2.0)
def vm_provision(ctx: Ctx, vm: str) -> None:
    """xapi's Xapi_vm.provision: the VM stops being a template first, then the disks its
    other_config:disks asks for are made (each <disk sr> must be an SR's UUID), then the
    install keys go.  A failure destroys the disks made so far; the VM stays a non-template."""
    db = ctx.db
    rec = vm_op_check(ctx, vm, "provision")
    set_is_a_template(ctx, vm, False)
    spec = rec["other_config"].get("disks")
    if not spec and "postinstall" not in rec["other_config"]:
        return
    try:
        root = ET.fromstring(spec) if spec else ET.Element("provision")
        if root.tag != "provision":
            raise ET.ParseError
        disks = [_provision_disk(d) for d in root]
    except (ET.ParseError, KeyError, ValueError):
        raise ApiError("INTERNAL_ERROR", "Xapi_templates.Parse_failure") from None
    made: list[tuple[str, str]] = []
    try:
        for device, size, sr_uuid, bootable, vdi_type in disks:
            try:
                sr = db.by_uuid("SR", sr_uuid)
            except ApiError:
                raise ApiError("UUID_INVALID", "sr", sr_uuid) from None
            _sr_alloc(ctx, sr, size)
            vdi = db.create(
                "VDI",
                name_label=device,
                name_description="Created by template provisioner",
                SR=sr,
                virtual_size=size,
                physical_utilisation=size,
                type=vdi_type,
                sharable=False,
                read_only=False,
                other_config={},
                sm_config={"vmhint": rec["uuid"]},
                location=new_uuid(),
            )
            vbd = db.create(
                "VBD",
                VM=vm,
                VDI=vdi,
                userdevice=device,
                device="",
                bootable=bootable,
                mode="RW",
                type="Disk",
                unpluggable=vdi_type != "system",
                empty=False,
                other_config={"owner": ""},
                qos_algorithm_type="",
                qos_algorithm_params={},
            )
            made.append((vbd, vdi))
    except ApiError:
        for vbd, vdi in made:
            db.destroy(vbd)
            vdi_destroy(ctx, vdi)
        raise
    oc = dict(db.get(vm, "VM")["other_config"])
    oc.pop("disks", None)
    oc.pop("postinstall", None)
    db.set(vm, other_config=oc)


def _provision_disk(d: ET.Element) -> tuple[str, int, str, bool, str]:
    """One <disk device= size= sr= bootable= type=/> (xapi's disk_of_xml: all but type required)."""
    if d.tag != "disk":
        raise ValueError(d.tag)
    vdi_type = d.get("type", "system")
    if vdi_type not in ("system", "user", "ephemeral", "suspend", "crashdump"):
        vdi_type = "system"
    return d.attrib["device"], int(d.attrib["size"]), d.attrib["sr"], d.attrib["bootable"] == "true", vdi_type


@HANDLERS.api("VM.set_is_a_template")
def set_is_a_template(ctx: Ctx, vm: str, value: bool) -> None:
    """xapi_vm_helpers.set_is_a_template: false is "install time" (stamped on the metrics);
    true needs a halted VM not protected by HA, clears ha_always_run and drops the metrics."""
    db = ctx.db
    rec = db.get(vm, "VM")
    if value:
        if not rec["is_a_template"]:
            vm_op_check(ctx, vm, "make_into_template")
        if ctx.dep.pool(db)["ha_enabled"] and rec["ha_always_run"] and rec["ha_restart_priority"] == "restart":
            raise ApiError("VM_IS_PROTECTED", vm)
        db.set(vm, ha_always_run=False)
        metrics = rec["metrics"]
        if db.exists(metrics, "VM_metrics"):
            db.set(vm, metrics=NULL_REF)
            db.destroy(metrics)
    elif db.exists(rec["metrics"], "VM_metrics"):
        db.set(rec["metrics"], install_time=ctx.dep.now())
    db.set(vm, is_a_template=value)


@HANDLERS.api("VDI.snapshot", duration=1.0)
def vdi_snapshot(ctx: Ctx, vdi: str, driver_params: dict | None = None) -> str:
    snap = _clone_vdi(ctx, vdi)
    ctx.db.set(snap, is_a_snapshot=True, snapshot_of=vdi, snapshot_time=ctx.dep.now(), read_only=True)
    return snap


@HANDLERS.api("VM.snapshot", duration=2.0)
def vm_snapshot(ctx: Ctx, vm: str, new_name: str, ignore_vdis: list[str] | None = None) -> str:
    """Disk-only snapshot: a halted template marked is_a_snapshot, VDIs snapshotted."""
    db = ctx.db
    rec = vm_op_check(ctx, vm, "snapshot")
    ignore = set(ignore_vdis or [])
    keep_vbds = [v for v in rec["VBDs"] if db.get(v, "VBD")["VDI"] not in ignore]
    snap = _copy_vm(ctx, vm, new_name, None, full=False, vbds=keep_vbds, vdi_fn=vdi_snapshot, snapshot=True)
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


@HANDLERS.api("VM.revert", duration=2.0)
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
