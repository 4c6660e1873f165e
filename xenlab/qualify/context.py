"""What every check gets: the lab, the suite's settings, progress, and a way to each host's shell."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..lab.contract import LabBackend
from ..report.suite_profile import SuiteSpec
from ..waiting import Progress, quiet

COMMAND_TIMEOUT = 120.0


@dataclass
class Context:
    lab: LabBackend
    suite: SuiteSpec
    progress: Progress = quiet
    started_here: bool = False  # the suite brought the lab up itself (its bring-up stages are real boots)
    base_dirs: tuple[str, ...] = (".",)  # where a profile's relative scenario files are looked for, in order

    @property
    def backend(self) -> str:
        return self.lab.spec.backend

    def shells(self) -> list[Any]:
        """The lab's Xen hosts with a shell ([] for a simulator, whose hosts have none, and for
        static XCP-ng hosts reached through xapi only)."""
        machines = self.lab.machines
        return [machines[h.name] for h in self.lab.hosts
                if h.name in machines and getattr(machines[h.name], "has_shell", True)]

    def no_shell_reason(self) -> str:
        if self.backend == "static":
            return (f"the hosts of static lab {self.lab.name} are reached through xapi only (no `ssh:` in its lab "
                    "file): nothing to run commands on")
        return (f"{self.backend} lab {self.lab.name} has no host shells (its hosts are simulated): "
                "nothing to run commands on")

    def services(self) -> Any | None:
        spec = self.lab.spec.services
        return self.lab.machines.get(spec.name) if spec is not None else None

    def networks_of(self, host: Any) -> list[str]:
        """The lab networks a host has a NIC on (a static host: its pool network)."""
        spec = self.lab.spec
        if host.name in spec.hosts and spec.backend == "qemu":
            return spec.nics_of(spec.hosts[host.name])
        return [next(iter(spec.networks))]

