"""Checkpoints of a QEMU lab: every machine stopped, its disks frozen as layers and its
state saved, then resumed; a restore restarts every machine in a fresh QEMU over the
layers, fed its saved state (see `lab.layers`). A mixin of `Lab`.
"""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import Callable
from pathlib import Path

from ..errors import XenlabError
from . import layers
from .host import Host
from .parallel import in_parallel
from .rundir import CheckpointState, LabState, LayerState, RunDir


def monitor_do(host: Host, command: str) -> None:
    with host.monitor() as qmp:
        qmp.command(command)


def _check_tag(tag: str) -> None:
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,39}", tag):
        raise XenlabError(f"invalid checkpoint name {tag!r}: letters, digits, '_', '.', '-' (at most 40)")


class Checkpoints:
    """checkpoint_save/restore/delete and what they share; `Lab` provides the attributes below."""

    name: str
    machines: dict[str, Host]
    state: LabState
    run: RunDir
    _save: Callable[[], None]  # Lab.save_state

    def checkpoint_tags(self) -> list[str]:
        return [c.tag for c in self.state.checkpoints]

    def checkpoint_save(self, tag: str) -> float:
        """Stop every machine, freeze its disks as layers and save its state, resume all
        (see `lab.layers`); seconds taken."""
        _check_tag(tag)
        running = [h for h in self.machines.values() if h.process_alive()]
        if len(running) != len(self.machines):
            off = ", ".join(h.name for h in self.machines.values() if h not in running)
            raise XenlabError(f"cannot checkpoint lab {self.name}: {off} is off")
        started = time.monotonic()
        layer_id = f"{int(time.time() * 1000):x}-{tag}"
        directory = self.run.root / "layers" / layer_id
        directory.mkdir(mode=0o700, parents=True)
        was_paused = {h.name: h.run_state() == "paused" for h in running}
        in_parallel(running, lambda h: monitor_do(h, "stop"))
        sizes: list[int] = []
        try:
            in_parallel(running, lambda h: layers.freeze_disks(h, directory))
            sizes = in_parallel(running, lambda h: layers.save_state(h, layers.state_file(directory, h.name)))
        finally:
            # Disks switched or not, the new layer is kept while anything may be backed by it.
            self.state.layers.append(LayerState(layer_id, str(directory), self.state.top_parent, time.time()))
            self.state.top_parent = layer_id
            self._save()
            in_parallel([h for h in running if not was_paused[h.name]], lambda h: monitor_do(h, "cont"))
        seconds = time.monotonic() - started
        self.state.checkpoints = [c for c in self.state.checkpoints if c.tag != tag]
        self.state.checkpoints.append(CheckpointState(tag, time.time(), round(seconds, 3), layer_id, sum(sizes)))
        self._collect_layers()
        self._save()
        return seconds

    def checkpoint_restore(self, tag: str, wait_ssh: bool = True, timeout: float = 60) -> float:
        """Bring every machine back to checkpoint `tag` (powered-off ones are started):
        each restarts in a fresh QEMU on new disk tops over the checkpoint's layers, fed its
        saved state. Every other checkpoint is kept."""
        checkpoint = next((c for c in self.state.checkpoints if c.tag == tag), None)
        if checkpoint is None:
            known = ", ".join(c.tag for c in self.state.checkpoints) or "none"
            raise XenlabError(f"lab {self.name} has no checkpoint {tag!r} (checkpoints: {known})")
        layer = self._layer(checkpoint)
        started = time.monotonic()
        self._start_from(Path(layer.dir))
        self.state.top_parent = layer.id
        self._save()
        in_parallel(self.machines.values(), lambda h: monitor_do(h, "cont"))
        if wait_ssh:
            in_parallel(self.machines.values(), lambda h: h.wait_ssh(timeout))
            self.set_clocks()
        self._collect_layers()
        self._save()
        return time.monotonic() - started

    def _start_from(self, directory: Path) -> dict[str, float]:
        """Every machine from the checkpoint in `directory`, loaded and paused; seconds per
        machine. QEMUs are launched one by one (any thread may: `processes.spawn` forks them
        from its launcher thread, so a tied machine dies with the process, not a pool thread)."""
        started = time.monotonic()
        incoming = dict(in_parallel(self.machines.values(), lambda h: (h.name, layers.prepare_start(h, directory))))
        for host in self.machines.values():
            host.launch(paused=True, incoming=incoming[host.name])

        def load(host: Host) -> tuple[str, float]:
            layers.wait_loaded(host)
            return host.name, round(time.monotonic() - started, 2)

        return dict(in_parallel(self.machines.values(), load))

    def set_clocks(self) -> None:
        """Guest clocks resume at the saved moment; there is no NTP in a lab, so set them."""
        in_parallel(self.machines.values(), lambda h: h.run(f"date -s @{time.time():.3f} >/dev/null", timeout=30))

    def _layer(self, checkpoint: CheckpointState) -> LayerState:
        layer = next((x for x in self.state.layers if x.id == checkpoint.layer), None)
        if layer is None:
            raise XenlabError(f"checkpoint {checkpoint.tag!r} of lab {self.name} has no saved layer "
                              f"(saved by an older xenlab?); `xenlab down {self.name}` and up again")
        return layer

    def _collect_layers(self) -> None:
        """Forget layers nothing needs: no checkpoint is in them or above them, and the
        machines' disks are not backed by them. Layers of the warm cache stay on disk."""
        by_id = {x.id: x for x in self.state.layers}
        needed: set[str] = set()
        for start in [c.layer for c in self.state.checkpoints] + [self.state.top_parent]:
            while start and start not in needed and start in by_id:
                needed.add(start)
                start = by_id[start].parent
        for layer in self.state.layers:
            if layer.id not in needed and not layer.cached:
                shutil.rmtree(layer.dir, ignore_errors=True)
        self.state.layers = [x for x in self.state.layers if x.id in needed]

    def checkpoint_delete(self, tag: str) -> None:
        if tag not in {c.tag for c in self.state.checkpoints}:
            raise XenlabError(f"lab {self.name} has no checkpoint {tag!r}")
        self.state.checkpoints = [c for c in self.state.checkpoints if c.tag != tag]
        self._collect_layers()  # its files go unless the machines' disks still rest on them
        self._save()
