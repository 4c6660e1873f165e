"""Faults a lab can suffer, for any toolstack, and how each is undone.

Every fault goes through the lab's own controls (QMP power, or the hosts' virtual BMCs
when the lab file says `bmc: ipmi`; QMP links, the wirefilters
between each machine and its networks, the services node) so its effect is real: a
power cut is QEMU quitting, a partition is a wire that drops every packet while the
host's carrier stays up.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from .errors import XenlabError
from .lab.contract import FAULT_KINDS, ActiveFault

if TYPE_CHECKING:
    from .lab import Lab

def _targets(target: str | list[str]) -> list[str]:
    return [target] if isinstance(target, str) else list(target)


def _power(lab: Lab, host, action: str) -> None:
    """A host's power: through its virtual BMC when the lab file gives it one (IPMI, the same
    road as a real server's power in a static lab), else through its own control (QMP)."""
    if lab.spec.bmc_of(host.name) == "ipmi":
        from .lab.bmc import bmc_power

        if action in ("off", "reset"):
            host.forget_connections()
        bmc_power(lab.run.root, host.name).request(action, wait=60 if action in ("on", "off") else 0)
    else:
        host.power(action)


def inject(lab: Lab, kind: str, target: str | list[str], **params) -> ActiveFault:
    """Inflict `kind` on `target` (a machine name, or several for partition/impair)."""
    if kind not in FAULT_KINDS:
        raise XenlabError(f"unknown fault {kind!r} (one of {', '.join(FAULT_KINDS)})")
    names = _targets(target) if kind != "storage_loss" else []
    hosts = [lab.host(n) for n in names]
    network = params.get("network") or lab.plan.networks[0].name
    started = time.time()

    if kind == "power_cut":
        for h in hosts:
            _power(lab, h, "off")

        def heal() -> None:
            for h in hosts:
                if not h.process_alive():
                    _power(lab, h, "on")
            for h in hosts:
                h.wait_ready(timeout=params.get("heal_timeout", 300))
        return ActiveFault(kind, target, started, params, heal)

    if kind == "freeze":
        for h in hosts:
            h.power("freeze")
        return ActiveFault(kind, target, started, params, lambda: [h.power("thaw") for h in hosts])

    if kind == "reset":
        for h in hosts:
            _power(lab, h, "reset")
        return ActiveFault(kind, target, started, params, None)

    if kind == "link_down":
        for h in hosts:
            h.link(network, False)
        return ActiveFault(kind, target, started, params, lambda: [h.link(network, True) for h in hosts])

    if kind in ("impair", "partition"):
        wires = [lab.wire(h.name, network) for h in hosts]
        if kind == "partition":
            settings = {"loss_pct": 100, "delay_ms": 0, "bandwidth_kbit": 0}
        else:
            settings = {k: float(params.get(k, 0)) for k in ("loss_pct", "delay_ms", "bandwidth_kbit")}
        for wire in wires:
            wire.set(**settings)
        return ActiveFault(kind, target, started, {**params, **settings}, lambda: [w.clear() for w in wires])

    # storage_loss: the shared SR's NFS server stops answering
    services = lab.services
    if services is None:
        raise XenlabError(f"lab {lab.name} has no services node: no storage to lose")
    services.succeed("systemctl stop nfs-server", timeout=120)
    return ActiveFault(kind, "services", started, params,
                       lambda: services.succeed("systemctl start nfs-server", timeout=120))


class Faults:
    """The faults of one scenario or test on a QEMU lab: injected through it, all healed at the end."""

    def __init__(self, lab: Lab):
        self.lab = lab
        self.active: list[ActiveFault] = []

    def inject(self, kind: str, target: str | list[str], **params) -> ActiveFault:
        fault = inject(self.lab, kind, target, **params)
        self.active.append(fault)
        return fault

    def heal_all(self) -> list[str]:
        """Heal every fault still active, newest first; returns the errors met (if any)."""
        errors = []
        for fault in reversed(self.active):
            try:
                fault.heal()
            except Exception as exc:  # noqa: BLE001 - keep healing the others, report all
                errors.append(f"healing {fault.kind} on {fault.target}: {exc}")
        self.active = [f for f in self.active if f.healed_at is None]
        return errors
