"""Where a VM may run and where it goes: usable hosts, SR visibility, boot checks, host choice.

A mixin of ``Deployment`` (``deployment.py``): its methods use the deployment's state."""

from __future__ import annotations

from .model import NULL_REF, ApiError, Database


class Placement:
    """Where a VM may run and where it goes (part of ``Deployment``)."""

    # ------------------------------------------------------------------ placement
    def usable_hosts(self, db: Database, exclude: str | None = None) -> list[str]:
        master = self.master_of(db)
        out = []
        for h in self.members(db):
            if h.ref == exclude:
                continue
            rec = db.get(h.ref, "host")
            if not rec["enabled"] or not self.host_live(db, h.ref) or not self.reachable(master, h):
                continue
            out.append(h.ref)
        return out

    def vm_srs(self, db: Database, vm: str) -> list[str]:
        srs = []
        for vbd in db.get(vm, "VM")["VBDs"]:
            v = db.get(vbd, "VBD")
            if v["empty"] or not db.exists(v["VDI"], "VDI"):
                continue
            sr = db.get(v["VDI"], "VDI")["SR"]
            if sr not in srs:
                srs.append(sr)
        return srs

    def host_sees_sr(self, db: Database, href: str, sr: str) -> bool:
        return any(
            db.get(p, "PBD")["SR"] == sr and db.get(p, "PBD")["currently_attached"]
            for p in db.get(href, "host")["PBDs"]
        )

    def check_can_boot(self, db: Database, vm: str, href: str, memory: bool = True) -> None:
        h = self.host_by_ref(href)
        master = self.master_of(db)
        if not self.host_live(db, href):
            raise ApiError("HOST_NOT_LIVE")
        if not self.reachable(master, h):
            raise ApiError("CANNOT_CONTACT_HOST", href)
        if not db.get(href, "host")["enabled"]:
            raise ApiError("HOST_DISABLED", href)
        for sr in self.vm_srs(db, vm):
            if not self.host_sees_sr(db, href, sr):
                raise ApiError("VM_REQUIRES_SR", vm, sr)
        if memory:
            need = self.vm_memory_needed(db.get(vm, "VM"))
            free = self.host_free_memory(db, href)
            if free < need:
                raise ApiError("HOST_NOT_ENOUGH_FREE_MEMORY", need, free)

    def pick_host(self, db: Database, vm: str, exclude: str | None = None) -> str | None:
        """Most-free-memory placement among hosts that can boot the VM."""
        best, best_free = None, -1
        affinity = db.get(vm, "VM")["affinity"]
        for href in self.usable_hosts(db, exclude=exclude):
            try:
                self.check_can_boot(db, vm, href)
            except ApiError:
                continue
            free = self.host_free_memory(db, href)
            if href == affinity:
                return href
            if free > best_free:
                best, best_free = href, free
        return best

    def boot_vm(self, db: Database, vm: str, href: str, paused: bool) -> None:
        rec = db.get(vm, "VM")
        db.set(
            vm,
            power_state="Paused" if paused else "Running",
            resident_on=href,
            domid=self.next_domid(self.host_by_ref(href)),
            scheduled_to_be_resident_on=NULL_REF,
            ha_always_run=rec["ha_restart_priority"] == "restart",
            last_booted_record="",
        )
        self.vm_metrics_running(db, vm)
        self.devices_attached(db, vm, True)
        self.refresh_memory(db, href)
        self.guests.booted(vm, self.clock.now(), paused=paused)
        self.agent_domain_started(db, vm)

    def devices_attached(self, db: Database, vm: str, attached: bool) -> None:
        """A running domain has its VBDs and VIFs plugged; xapi marks them all detached when it halts."""
        rec = db.get(vm, "VM")
        for dev in rec["VBDs"] + rec["VIFs"]:
            db.set(dev, currently_attached=attached)
