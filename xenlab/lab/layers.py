"""Checkpoints as frozen disk layers plus a saved machine state.

A checkpoint of a machine is (a) each writable disk frozen: the qcow2 the machine writes
(its *top*) becomes a read-only layer, hard-linked into the checkpoint's directory, and
the machine goes on in a new empty top backed by it; and (b) its RAM and device state,
written by QEMU's migration to a file while its vCPUs are stopped. A restore starts a
fresh QEMU on new empty tops over the layers and feeds it that file with `-incoming`.
Nothing is copied, so saving and restoring cost what the RAM state costs; layers form a
tree, so restoring one checkpoint keeps every other. A lab's warm state in the cache
(`lab.warm`) is one such layer set.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import XenlabError
from ..waiting import StopWaiting, wait_for

if TYPE_CHECKING:
    from .host import Host

# QEMU's default migration bandwidth limit (128 MiB/s) would make saving a state take
# seconds per GiB; to a local file there is nothing to protect.
UNLIMITED_BANDWIDTH = 64 << 30


@dataclass(frozen=True)
class Drive:
    """A writable disk of a machine: its QEMU drive id and the top file it writes."""

    id: str
    top: Path


def drives(host: Host) -> list[Drive]:
    files = host.files(Path(host.state.image_dir))
    return [Drive("root", files.overlay)] + [Drive(f"data{i}", p) for i, p in enumerate(files.data_disks)]


def layer_file(directory: Path, host: str, drive: str) -> Path:
    return directory / f"{host}-{drive}.qcow2"


def state_file(directory: Path, host: str) -> Path:
    return directory / f"{host}.vmstate"


def virtual_size(image: Path) -> int:
    done = subprocess.run(["qemu-img", "info", "-U", "--output=json", str(image)], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise XenlabError(f"cannot read {image}: {done.stderr.strip()}")
    return int(json.loads(done.stdout)["virtual-size"])


def new_top(top: Path, backing: Path) -> None:
    """An empty qcow2 at `top` whose reads fall through to `backing` (which is not opened)."""
    size = virtual_size(backing)
    done = subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", str(backing), "-u",
                           str(top), str(size)], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise XenlabError(f"cannot create {top} over {backing}: {done.stderr.strip()}")


def freeze_disks(host: Host, directory: Path) -> None:
    """The machine (stopped) goes on in new tops; its current tops become layers in `directory`.

    The layer is a hard link of the top (the same file, no copy); QEMU switches to the new
    top with blockdev-snapshot-sync, after which it only reads the old one. The old top
    keeps its name while this QEMU runs: QEMU reopens a file by its name when it changes
    what it does with it (saving the state does), so a rename under it breaks that.
    """
    for drive in drives(host):
        frozen = layer_file(directory, host.name, drive.id)
        os.link(drive.top, frozen)
        upcoming = drive.top.with_name(f"{drive.id}.{directory.name}.qcow2")
        new_top(upcoming, frozen)
        with host.monitor() as qmp:
            qmp.command("blockdev-snapshot-sync", device=drive.id, **{"snapshot-file": str(upcoming)},
                        format="qcow2", mode="existing")
        host.state.tops[drive.id] = str(upcoming)


def save_state(host: Host, path: Path, timeout: float = 300) -> int:
    """Write the stopped machine's RAM and device state to `path`; its size in bytes."""
    with host.monitor() as qmp:
        qmp.command("migrate-set-parameters", **{"max-bandwidth": UNLIMITED_BANDWIDTH})
        qmp.command("migrate", uri=f"exec:cat > {_quote(path)}")
    last: dict = {}

    def completed() -> bool:
        with host.monitor() as qmp:
            last.update(qmp.command("query-migrate"))
        status = last.get("status")
        if status in ("failed", "cancelled"):
            raise StopWaiting(f"{host.name}: saving its state failed: {last.get('error-desc', status)}")
        return status == "completed"

    wait_for(completed, f"{host.name}: state saved to {path.name}", timeout, 0.05,
             lambda: f"last query-migrate: {last}")
    return path.stat().st_size


def prepare_start(host: Host, directory: Path) -> Path:
    """Power the machine off and give it new empty tops over the checkpoint's layers; the
    path of the saved state to launch it with (`Host.launch(paused=True, incoming=...)`),
    then `wait_loaded`."""
    host.power_off()
    stamp = f"{int(time.time() * 1000):x}"
    for drive in drives(host):
        layer = layer_file(directory, host.name, drive.id)
        if not layer.exists():
            raise XenlabError(f"{host.name}: checkpoint layer {layer} is missing")
        for old in host.dir.glob(f"{drive.id}.*qcow2"):
            old.unlink()  # earlier tops (layers hold their own links to what they froze)
        if drive.id == "root":
            (host.dir / "root.qcow2").unlink(missing_ok=True)
        top = host.dir / f"{drive.id}.{stamp}.qcow2"
        new_top(top, layer)
        host.state.tops[drive.id] = str(top)
    saved = state_file(directory, host.name)
    if not saved.exists():
        raise XenlabError(f"{host.name}: saved state {saved} is missing")
    incoming = host.dir / "incoming.vmstate"  # in the run directory: `cat`'s command line names it
    incoming.unlink(missing_ok=True)
    incoming.symlink_to(saved)
    return incoming


def wait_loaded(host: Host, timeout: float = 120) -> None:
    """Until the launched machine has loaded its saved state (it stays paused)."""
    incoming = host.dir / "incoming.vmstate"
    saved = incoming.resolve() if incoming.is_symlink() else incoming

    def loaded() -> bool:
        if not host.process_alive():
            log = host.dir / "qemu.log"
            tail = log.read_text(errors="replace")[-800:] if log.exists() else ""
            raise StopWaiting(f"{host.name}: QEMU exited while loading {saved}: {tail}")
        with host.monitor() as qmp:
            return qmp.status() != "inmigrate"

    wait_for(loaded, f"{host.name}: state loaded from {saved.name}", timeout, 0.05)
    with host.monitor() as qmp:
        status = qmp.status()
    if status not in ("paused", "prelaunch"):
        raise XenlabError(f"{host.name}: after loading {saved} QEMU is {status!r}, not paused")
    incoming.unlink(missing_ok=True)


def _quote(path: Path) -> str:
    import shlex

    return shlex.quote(str(path))
