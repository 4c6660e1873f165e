"""Faults on a static lab's hosts: power through their BMCs, network through dom0's firewall.

Split from `static` (the lab and its hosts); see its docstring for what a static lab can
and cannot do, and docs/real-hosts.md for what each fault does to a real host.
"""

from __future__ import annotations

import atexit
import os
import signal
import threading
import time
from typing import TYPE_CHECKING

from ..errors import XenlabError
from . import firewall
from .contract import ActiveFault

if TYPE_CHECKING:
    from .static import StaticHost, StaticLab


class StaticFaults:
    """Faults on static hosts: power through their BMCs, network through dom0's firewall.

    Every fault is healed by the runner at the end of a scenario; those still active when
    this process exits (normally, or by SIGTERM/SIGHUP/SIGINT) are healed then; the
    firewall's dead-man timer covers the rest (SIGKILL, a crash of the controller)."""

    def __init__(self, lab: StaticLab):
        self.lab = lab
        self.active: list[ActiveFault] = []
        self._lock = threading.Lock()
        self._hooked = False

    def _targets(self, target: str | list[str]) -> list[StaticHost]:
        names = [target] if isinstance(target, str) else list(target)
        hosts = [self.lab.host(n) for n in names]
        for h in hosts:
            if h.role != "xen":
                raise XenlabError(f"{h.name} is the services node of static lab {self.lab.name}: xenlab does not "
                                  "inflict faults on it")
        return hosts

    def inject(self, kind: str, target: str | list[str], **params) -> ActiveFault:
        if kind not in self.lab.capabilities.fault_kinds:
            raise XenlabError(f"fault {kind} is not offered by static lab {self.lab.name} "
                              f"(it offers {', '.join(self.lab.capabilities.fault_kinds)})")
        started = time.time()
        if kind == "power_cut":
            hosts = self._targets(target)
            for h in hosts:
                h.power("off")

            def heal_power() -> None:
                for h in hosts:
                    if not h.process_alive():
                        h.power("on")
                for h in hosts:
                    h.wait_ready(timeout=params.get("heal_timeout", 600))
            return self._track(ActiveFault(kind, target, started, params, heal_power))
        if kind == "reset":
            for h in self._targets(target):
                h.power("reset")
            return ActiveFault(kind, target, started, params, None)
        deadman = int(params.get("deadman_s", firewall.DEADMAN_S))
        if kind == "partition":
            hosts = self._targets(target)
            subnet = self.lab.plan.networks[0].subnet
            for h in hosts:
                firewall.require_nft(h)
            for h in hosts:
                ruleset = firewall.partition_ruleset(subnet, firewall.controller_address(h), firewall.bridge_uplinks(h))
                firewall.apply(h, "partition", ruleset, deadman)
        else:  # storage_loss: every host loses the shared SR's NFS server
            services = self.lab.spec.services
            if services is None or services.address is None:
                raise XenlabError(f"static lab {self.lab.name} has no services node: no storage to lose")
            hosts = self.lab.hosts
            for h in hosts:
                firewall.require_nft(h)
            for h in hosts:
                firewall.apply(h, "storage", firewall.storage_ruleset(services.address), deadman)

        rules = "partition" if kind == "partition" else "storage"

        def heal_rules() -> None:
            errors = []
            for h in hosts:
                try:
                    firewall.clear(h, rules)
                except XenlabError as exc:
                    errors.append(str(exc))
            if errors:
                raise XenlabError("; ".join(errors))
        return self._track(ActiveFault(kind, target if kind == "partition" else "services", started,
                                       {**params, "deadman_s": deadman}, heal_rules))

    def _track(self, fault: ActiveFault) -> ActiveFault:
        with self._lock:
            self.active.append(fault)
            if not self._hooked:
                self._hook_exit()
        return fault

    def heal_all(self) -> list[str]:
        """Heal every fault still active, newest first; the errors met."""
        errors = []
        with self._lock:
            pending = list(reversed(self.active))
        for fault in pending:
            try:
                fault.heal()
            except Exception as exc:  # noqa: BLE001 - keep healing the others, report all
                errors.append(f"healing {fault.kind} on {fault.target}: {exc}")
        with self._lock:
            self.active = [f for f in self.active if f.healed_at is None]
        return errors

    def _hook_exit(self) -> None:
        """Heal at interpreter exit and on the signals that end a run politely."""
        self._hooked = True
        atexit.register(self.heal_all)
        if threading.current_thread() is not threading.main_thread():
            return
        for signum in (signal.SIGTERM, signal.SIGHUP):
            previous = signal.getsignal(signum)
            if previous not in (signal.SIG_DFL, None):
                continue  # someone else handles it (pytest, the CLI): atexit still heals

            def on_signal(num, frame, previous=previous):
                self.heal_all()
                signal.signal(num, signal.SIG_DFL)
                os.kill(os.getpid(), num)
            signal.signal(signum, on_signal)
