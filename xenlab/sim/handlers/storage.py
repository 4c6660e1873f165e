"""SR, PBD, VDI and VBD messages."""

from __future__ import annotations

import copy
from typing import Any

from ..calls import Ctx, Handlers
from ..generic import ctor_fields
from ..hosts import GiB
from ..model import NULL_REF, ApiError, new_uuid
from .common import SHARED_SR_TYPES, SR_TYPES, assert_hotplug, host_of

HANDLERS = Handlers("storage")


@HANDLERS.api("SR.create", duration=5.0)
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


@HANDLERS.api("SR.destroy")
def sr_destroy(ctx: Ctx, sr: str) -> None:
    _sr_remove(ctx, sr, forget=False)


@HANDLERS.api("SR.forget")
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


@HANDLERS.api("SR.scan")
def sr_scan(ctx: Ctx, sr: str) -> None:
    ctx.db.get(sr, "SR")


@HANDLERS.api("PBD.plug")
def pbd_plug(ctx: Ctx, pbd: str) -> None:
    ctx.db.get(pbd, "PBD")
    ctx.db.set(pbd, currently_attached=True)


@HANDLERS.api("PBD.unplug")
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


@HANDLERS.api("VDI.create", duration=1.0)
def vdi_create(ctx: Ctx, record: dict[str, Any]) -> str:
    f = ctor_fields(ctx.dm, "VDI", record)
    ctx.db.get(f["SR"], "SR")
    _sr_alloc(ctx, f["SR"], int(f["virtual_size"]))
    f["location"] = f.get("location") or new_uuid()
    f["physical_utilisation"] = int(f["virtual_size"])
    return ctx.db.create("VDI", **{k: v for k, v in f.items() if k in ctx.dm.cls("VDI").fields})


@HANDLERS.api("VDI.destroy")
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


@HANDLERS.api("VDI.resize", duration=1.0)
def vdi_resize(ctx: Ctx, vdi: str, size: int) -> None:
    """xapi_vdi.resize (offline): refused while a VBD has it attached (VDI_IN_USE) and on an SR
    with no plugged PBD; the file-based SM refuses to shrink (its VDISize error, code 79)."""
    db = ctx.db
    rec = db.get(vdi, "VDI")
    if not any(db.get(p, "PBD")["currently_attached"] for p in db.get(rec["SR"], "SR")["PBDs"]):
        raise ApiError("SR_HAS_NO_PBDS", rec["SR"])
    if any(db.get(v, "VBD")["currently_attached"] for v in rec["VBDs"]):
        raise ApiError("VDI_IN_USE", vdi, "resize")
    if size < rec["virtual_size"]:
        raise ApiError("SR_BACKEND_FAILURE_79", "", "VDI Invalid size [opterr=shrinking not allowed]", "")
    grow = size - rec["virtual_size"]
    if grow:
        _sr_alloc(ctx, rec["SR"], grow)
        db.set(vdi, virtual_size=size, physical_utilisation=rec["physical_utilisation"] + grow)


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


@HANDLERS.api("VDI.clone", duration=1.0)
def vdi_clone(ctx: Ctx, vdi: str, driver_params: dict | None = None) -> str:
    return _clone_vdi(ctx, vdi)


@HANDLERS.api("VDI.copy", duration=5.0)
def vdi_copy(ctx: Ctx, vdi: str, sr: str, *rest) -> str:
    ctx.db.get(sr, "SR")
    return _clone_vdi(ctx, vdi, sr)


def _free_device(used: list[str], limit: int = 16) -> str:
    for n in range(limit):
        if str(n) not in used:
            return str(n)
    raise ApiError("INVALID_DEVICE", "autodetect")


@HANDLERS.api("VBD.create")
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


@HANDLERS.api("VBD.destroy")
def vbd_destroy(ctx: Ctx, vbd: str) -> None:
    rec = ctx.db.get(vbd, "VBD")
    if rec["currently_attached"]:
        raise ApiError("OPERATION_NOT_ALLOWED", "VBD is currently attached")
    ctx.db.destroy(vbd)


@HANDLERS.api("VBD.plug")
def vbd_plug(ctx: Ctx, vbd: str) -> None:
    rec = ctx.db.get(vbd, "VBD")
    vm = ctx.db.get(rec["VM"], "VM")
    if vm["power_state"] == "Running" and rec["currently_attached"]:
        raise ApiError("DEVICE_ALREADY_ATTACHED", vbd)
    assert_hotplug(ctx, rec["VM"], "vbd")
    ctx.db.set(vbd, currently_attached=True)


@HANDLERS.api("VBD.unplug")
def vbd_unplug(ctx: Ctx, vbd: str) -> None:
    rec = ctx.db.get(vbd, "VBD")
    if not rec["currently_attached"]:
        raise ApiError("DEVICE_ALREADY_DETACHED", vbd)
    ctx.db.set(vbd, currently_attached=False)


HANDLERS.api("VBD.unplug_force")(vbd_unplug)
