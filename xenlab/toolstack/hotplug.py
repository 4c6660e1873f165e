"""Which hotplug scripts dom0 runs when a guest's disk and NIC are attached (at create, and
inside a migration's blackout on the target, where libxl runs them before it unpauses).

`debian` (the default): Debian's own /etc/xen/scripts/block and vif-bridge, the path a real
Debian Xen host runs. `lean` (a lab option, `hotplug: lean`): xenlab's two short POSIX
scripts in xenlab/toolstack/files, which do the same attach in a handful of processes -
under TCG each process a PV dom0 forks costs a large fraction of a second, and Debian's
scripts fork dozens (bench/migration_profile.py measures both). What `lean` leaves out is
said in each script's header; it is never chosen silently.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from typing import Protocol

from ..spec import HotplugKind

HOTPLUG_KINDS: tuple[str, ...] = ("debian", "lean")
SCRIPT_DIR = "/etc/xen/scripts"
LEAN_FILES = ("xenlab-block", "xenlab-vif-bridge")


@dataclass(frozen=True)
class HotplugScripts:
    """The `script=` of a guest's disk and of its vif, as the xl config names them."""

    kind: HotplugKind
    disk: str
    vif: str | None  # None: xl's default (vif-bridge, from xl.conf)


def scripts_for(kind: HotplugKind) -> HotplugScripts:
    if kind == "lean":
        return HotplugScripts("lean", f"{SCRIPT_DIR}/xenlab-block", f"{SCRIPT_DIR}/xenlab-vif-bridge")
    if kind == "debian":
        return HotplugScripts("debian", "block", None)
    raise ValueError(f"unknown hotplug scripts {kind!r}: {' or '.join(HOTPLUG_KINDS)}")


def lean_script(name: str) -> str:
    """The text of one of xenlab's lean scripts (package data)."""
    if name not in LEAN_FILES:
        raise ValueError(f"no lean hotplug script {name!r}")
    return resources.files(__package__).joinpath("files", name).read_text()


class WritesFiles(Protocol):
    def write_file(self, path: str, content: str, mode: int = 0o644) -> None: ...


def install_lean_scripts(host: WritesFiles) -> None:
    """Put xenlab's lean scripts in a dom0 (every member: a migration's target runs them)."""
    for name in LEAN_FILES:
        host.write_file(f"{SCRIPT_DIR}/{name}", lean_script(name), 0o755)
