"""Faults and what follows them: kill, isolate, heal, failure detection, HA fencing and restarts.

A mixin of ``Deployment`` (``deployment.py``): its methods use the deployment's state."""

from __future__ import annotations

from .hosts import (
    HA_DEFAULT_TIMEOUT,
    HOST_ASSUMED_DEAD,
    SimHost,
)
from .model import NULL_REF, Database


class Failures:
    """Faults and what follows them (part of ``Deployment``)."""

    # ------------------------------------------------------------------ faults
    def kill_host(self, key: int | str) -> None:
        """The host loses power: endpoint stops answering, its domains die."""
        with self.lock:
            h = self.host(key)
            if not h.alive:
                return
            h.alive = False
            h.down_since = self.clock.now()
            self._schedule_failure_detection(h)
        self._fire(h)

    def isolate_host(self, key: int | str) -> None:
        """The host keeps running but cannot reach (or be reached by) its peers."""
        with self.lock:
            h = self.host(key)
            if h.isolated:
                return
            h.isolated = True
            h.down_since = self.clock.now()
            self._schedule_failure_detection(h)
        self._fire(h)

    def heal(self, key: int | str | None = None) -> None:
        """Undo kill/isolate for one host (or all): it boots back and rejoins."""
        with self.lock:
            targets = self.hosts if key is None else [self.host(key)]
            for h in targets:
                was_down = (not h.alive) or h.fenced
                h.alive, h.isolated, h.fenced, h.down_since = True, False, False, None
                db = h.db
                if db is None:
                    continue
                if was_down:
                    # a rebooted host runs nothing but dom0
                    for vm in list(db.get(h.ref, "host")["resident_VMs"]):
                        rec = db.get(vm, "VM")
                        if not rec["is_control_domain"]:
                            self.force_halt(db, vm)
                m = db.get(h.ref, "host")["metrics"]
                if db.exists(m):
                    db.set(m, live=True, last_updated=self.now())
                if was_down:
                    db.set(h.ref, enabled=True)
                self.refresh_memory(db, h.ref)
        for h in targets:
            self._fire(h)

    def configure_host(
        self, key: int | str, product_version: str | None = None, cpu_vendor: str | None = None,
        cpu_features: str | None = None,
    ) -> None:
        """Make a host differ from its peers (another release, another CPU), as a lab might."""
        with self.lock:
            h = self.host(key)
            assert h.db is not None
            rec = h.db.get(h.ref, "host")
            software, cpu = dict(rec["software_version"]), dict(rec["cpu_info"])
            if product_version is not None:
                software["product_version"] = product_version
            if cpu_vendor is not None:
                cpu["vendor"] = cpu_vendor
            if cpu_features is not None:
                cpu["features"] = cpu_features
            h.db.set(h.ref, software_version=software, cpu_info=cpu)

    def _fire(self, h: SimHost) -> None:
        with self.lock:
            self._guests_follow(h)
        for fn in list(h.on_state_change):
            fn(h)

    def _guests_follow(self, h: SimHost) -> None:
        """A host's guests die with it, and go unheard while it is cut off."""
        if h.db is None:
            return
        now = self.clock.now()
        for vm in h.db.get(h.ref, "host")["resident_VMs"]:
            if h.db.get(vm, "VM")["is_control_domain"]:
                continue
            if not h.serving:
                self.guests.stopped(vm, now)
            elif h.isolated:
                self.guests.cut_off(vm, now)
            else:
                self.guests.reconnected(vm, now)

    def _schedule_failure_detection(self, h: SimHost) -> None:
        db = h.db
        if db is None:
            return
        ha = self.pool(db)["ha_enabled"]
        if ha:
            timeout = self.ha_timeout(db)
            self.clock.call_later(timeout, lambda: self._ha_tick(db))
        else:
            self.clock.call_later(HOST_ASSUMED_DEAD, lambda: self._heartbeat_tick(db))

    def ha_timeout(self, db: Database) -> float:
        cfg = self.pool(db)["ha_configuration"]
        try:
            return float(cfg.get("timeout", HA_DEFAULT_TIMEOUT))
        except ValueError:
            return HA_DEFAULT_TIMEOUT

    def force_halt(self, db: Database, vm: str) -> None:
        rec = db.get(vm, "VM")
        host = rec["resident_on"]
        db.set(vm, power_state="Halted", resident_on=NULL_REF, domid=-1, scheduled_to_be_resident_on=NULL_REF)
        self.guests.stopped(vm, self.clock.now())
        self.vm_metrics_halted(db, vm)
        self.devices_attached(db, vm, False)
        if db.exists(host, "host"):
            self.refresh_memory(db, host)

    def _heartbeat_tick(self, db: Database) -> None:
        """Without HA the master marks silent hosts not-live after 10 minutes."""
        with self.lock:
            if self.pool(db)["ha_enabled"]:
                return
            master = self.master_of(db)
            now = self.clock.now()
            for h in self.members(db):
                if h is master or h.down_since is None or now - h.down_since < HOST_ASSUMED_DEAD - 1e-6:
                    continue
                if self.reachable(master, h):
                    continue
                if not self.reachable(master, master):
                    continue
                m = db.get(h.ref, "host")["metrics"]
                if db.exists(m):
                    db.set(m, live=False)

    def _ha_tick(self, db: Database) -> None:
        """HA: declare unreachable hosts dead, fence, elect, restart protected VMs."""
        with self.lock:
            pool_ref = self.pool_ref(db)
            pool = db.get(pool_ref)
            if not pool["ha_enabled"]:
                return
            timeout = self.ha_timeout(db)
            now = self.clock.now()
            members = self.members(db)
            failed = [
                h
                for h in members
                if h.down_since is not None
                and now - h.down_since >= timeout - 1e-6
                and (not h.alive or h.isolated)
                and self.host_live(db, h.ref)
            ]
            survivors = [h for h in members if h.alive and not h.isolated and not h.fenced]
            if not failed or not survivors:
                return
            for h in failed:
                if h.alive and h.isolated:
                    h.fenced = True  # xHA: the isolated node kills itself
                hrec = db.get(h.ref, "host")
                self.add_message(
                    db, "HA_HOST_FAILED", 3, "Host", hrec["uuid"], f"Server '{hrec['name_label']}' has failed"
                )
                db.set(hrec["metrics"], live=False)
                db.set(h.ref, enabled=False)
            reset: list[str] = []
            for h in failed:
                for vm in list(db.get(h.ref, "host")["resident_VMs"]):
                    rec = db.get(vm, "VM")
                    if rec["is_control_domain"]:
                        continue
                    self.force_halt(db, vm)
                    reset.append(vm)
            master = self.master_of(db)
            if master in failed:
                new = min(survivors, key=lambda x: x.index)
                db.set(pool_ref, master=new.ref)
            self._ha_restart(db, reset)
        for h in failed:
            self._fire(h)

    def _ha_restart(self, db: Database, reset: list[str]) -> None:
        protected = [
            r
            for r, rec in db.iter_records("VM")
            if rec["ha_restart_priority"] == "restart"
            and rec["ha_always_run"]
            and rec["power_state"] == "Halted"
            and not rec["is_a_template"]
            and not rec["is_control_domain"]
        ]
        best_effort = [r for r in reset if db.get(r, "VM")["ha_restart_priority"] == "best-effort"]

        def key(vm: str):
            rec = db.get(vm, "VM")
            return (int(rec["order"] or 0), rec["name_label"], vm)

        for vm in sorted(protected, key=key) + sorted(best_effort, key=key):
            rec = db.get(vm, "VM")
            if rec["power_state"] != "Halted":
                continue
            target = self.pick_host(db, vm)
            if target is None:
                if vm in protected:
                    self.add_message(
                        db,
                        "HA_PROTECTED_VM_RESTART_FAILED",
                        2,
                        "VM",
                        rec["uuid"],
                        f"VM '{rec['name_label']}' could not be restarted",
                    )
                continue
            self.boot_vm(db, vm, target, paused=False)
