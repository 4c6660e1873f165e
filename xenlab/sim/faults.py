"""Fault injection and clock control, in-process and as JSON over HTTP.

Kept apart from the XAPI surface on purpose: nothing here is reachable
through XML-RPC/JSON-RPC method names, only via ``/_sim/<action>``.
"""

from __future__ import annotations

from typing import Any

from .deployment import Deployment


class Control:
    """Operator/test hooks: kill, isolate, heal hosts and move the clock."""

    def __init__(self, deployment: Deployment) -> None:
        self.deployment = deployment

    def kill_host(self, host: int | str) -> None:
        """Power the host off: its endpoint refuses connections, its VMs die."""
        self.deployment.kill_host(host)

    def isolate_host(self, host: int | str) -> None:
        """Cut the host from its peers; it keeps running and answering clients."""
        self.deployment.isolate_host(host)

    def heal(self, host: int | str | None = None) -> None:
        """Bring a killed/isolated/fenced host (or all hosts) back."""
        self.deployment.heal(host)

    def configure_host(self, host: int | str, **facts: str) -> None:
        """Set a host's product_version, cpu_vendor or cpu_features (pool.join checks them)."""
        self.deployment.configure_host(host, **facts)

    def heartbeats(self, vm: str, since: float | None = None) -> list[tuple[int, float]]:
        """(seq, arrival time on the simulator's clock) of the modelled guest `vm` (a name_label)."""
        d = self.deployment
        with d.lock:
            refs = [ref for db in d.databases() for ref, rec in db.iter_records("VM")
                    if rec["name_label"] == vm and ref in d.guests.runs]
            if not refs:
                raise KeyError(f"no simulated guest named {vm!r} has run")
            if len(refs) > 1:
                raise ValueError(f"{len(refs)} simulated guests are named {vm!r}")
            return d.guests.series(refs[0], d.clock.now(), since)

    def drop_sessions(self) -> int:
        """Forget every session, as a restarted xapi does: clients next get SESSION_INVALID."""
        d = self.deployment
        with d.lock:
            dropped = 0
            for db in d.databases():
                for ref in list(db.refs("session")):
                    db.destroy(ref)
                    dropped += 1
            d.cond.notify_all()
            return dropped

    def advance(self, seconds: float) -> float:
        """Move simulated time forward (fires HA timeouts, task completions)."""
        return self.deployment.clock.advance(float(seconds))

    def now(self) -> float:
        return self.deployment.clock.now()

    def status(self) -> dict[str, Any]:
        d = self.deployment
        with d.lock:
            return {
                "now": d.clock.now(),
                "realtime": d.clock.realtime,
                "hosts": [
                    {
                        "name": h.name,
                        "address": h.address,
                        "alive": h.alive,
                        "isolated": h.isolated,
                        "fenced": h.fenced,
                        "master": d.is_master(h),
                    }
                    for h in d.hosts
                ],
            }

    def call(self, action: str, args: dict[str, Any]) -> Any:
        """Entry point for ``/_sim/<action>`` JSON requests."""
        if action == "kill_host":
            return self.kill_host(_host_arg(args))
        if action == "isolate_host":
            return self.isolate_host(_host_arg(args))
        if action == "heal":
            return self.heal(_host_arg(args) if "host" in args else None)
        if action == "advance":
            return self.advance(float(args["seconds"]))
        if action == "heartbeats":
            return self.heartbeats(str(args["vm"]), float(args["since"]) if args.get("since") is not None else None)
        if action == "configure_host":
            facts = {k: str(v) for k, v in args.items() if k != "host"}
            return self.configure_host(_host_arg(args), **facts)
        if action in ("now", "status", "drop_sessions"):
            return getattr(self, action)()
        raise KeyError(f"unknown control action {action!r}")


def _host_arg(args: dict[str, Any]) -> int | str:
    h = args["host"]
    return int(h) if isinstance(h, int) else str(h)
