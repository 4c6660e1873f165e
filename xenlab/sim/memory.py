"""Host and VM memory accounting (overheads, free memory, metrics) and xapi alert messages.

A mixin of ``Deployment`` (``deployment.py``): its methods use the deployment's state."""

from __future__ import annotations

from typing import Any

from .hosts import (
    MiB,
)
from .model import Database


class Memory:
    """Host and VM memory accounting (overheads, free memory, metrics) and xapi alert messages (part of ``Deployment``)."""

    # ------------------------------------------------------------------ memory
    @staticmethod
    def memory_overhead(rec: dict[str, Any]) -> int:
        """Per-domain overhead in bytes, following xenopsd's memory model.

        Shadow/p2m pages scale with static_max and vCPUs (times the shadow
        multiplier), plus a little per vCPU and a PVH shim for pv_in_pvh.
        """

        def mib_of_pages(pages: int) -> int:
            return -(-pages // 256)  # 4 KiB pages, rounded up

        static_max_mib = -(-int(rec["memory_static_max"]) // MiB)
        vcpus = int(rec["VCPUs_max"] or 1)
        kind = rec.get("domain_type") or "hvm"
        mult = float(rec.get("HVM_shadow_multiplier") or 1.0) if kind != "pv" else 1.0
        shadow = max(1, int(mib_of_pages(256 * vcpus + 2 * static_max_mib) * mult))
        internal = 0 if kind == "pv" else 1
        shim = 23 + static_max_mib // 90 if kind == "pv_in_pvh" else 0
        return (internal + 1 + shadow + mib_of_pages(38 * vcpus) + shim) * MiB

    def update_overhead(self, db: Database, vm: str) -> None:
        rec = db.get(vm, "VM")
        if not rec["is_control_domain"]:
            db.set(vm, memory_overhead=self.memory_overhead(rec))

    def vm_memory_needed(self, rec: dict[str, Any]) -> int:
        return int(rec["memory_static_max"]) + int(rec.get("memory_overhead") or 0)

    def host_free_memory(self, db: Database, href: str) -> int:
        h = self.host_by_ref(href)
        used = int(db.get(href, "host")["memory_overhead"] or 0)
        for vm in db.get(href, "host")["resident_VMs"]:
            rec = db.get(vm, "VM")
            if rec["power_state"] in ("Running", "Paused"):
                used += self.vm_memory_needed(rec)
        return h.memory_total - used

    def refresh_memory(self, db: Database, href: str) -> None:
        m = db.get(href, "host")["metrics"]
        if db.exists(m):
            db.set(m, memory_free=self.host_free_memory(db, href), last_updated=self.now())

    def vm_metrics_running(self, db: Database, vm: str) -> None:
        rec = db.get(vm, "VM")
        if db.exists(rec["metrics"]):
            db.set(
                rec["metrics"],
                memory_actual=int(rec["memory_static_max"]),
                VCPUs_number=int(rec["VCPUs_at_startup"]),
                start_time=self.now(),
                last_updated=self.now(),
                state=["running"],
                current_domain_type=rec.get("domain_type") or "hvm",
            )

    def vm_metrics_halted(self, db: Database, vm: str) -> None:
        rec = db.get(vm, "VM")
        if db.exists(rec["metrics"]):
            db.set(rec["metrics"], memory_actual=0, VCPUs_number=0, last_updated=self.now(), state=[])

    # ------------------------------------------------------------------ messages
    def add_message(self, db: Database, name: str, priority: int, cls: str, obj_uuid: str, body: str) -> str:
        return db.create(
            "message", name=name, priority=priority, cls=cls, obj_uuid=obj_uuid, timestamp=self.now(), body=body
        )
