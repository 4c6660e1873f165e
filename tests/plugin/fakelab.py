"""A lab stand-in for the plugin's tests: behaves like xenlab.lab.Lab where the plugin
touches it, boots nothing, and logs every call to a JSON-lines file the outer test reads."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace


def events() -> Path:
    return Path(os.environ["XENLAB_FAKE_EVENTS"])


def log(event: str, **data) -> None:
    with open(events(), "a") as f:
        f.write(json.dumps({"event": event, **data}) + "\n")


@dataclass
class FakeResult:
    status: int
    stdout: str
    stderr: str = ""

    @property
    def ok(self) -> bool:
        return self.status == 0


class FakeHost:
    def __init__(self, lab: FakeLab, name: str, role: str):
        self.lab, self.name, self.role = lab, name, role
        self.dir = lab.run.root / "machines" / name
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "serial.log").write_text(f"Xen version 4.17 on {name}\nlast line of {name}\n")
        (self.dir / "qmp-events.jsonl").write_text(json.dumps({"event": "STOP", "machine": name}) + "\n")
        self.ssh_port = 2200

    def serial_tail(self, lines: int = 20) -> str:
        return "\n".join((self.dir / "serial.log").read_text().splitlines()[-lines:])

    def run_state(self) -> str:
        return "running"

    def run(self, command: str, timeout: float = 60) -> FakeResult:
        log("run", lab=self.lab.name, host=self.name, command=command)
        if self.name == "h2":
            raise OSError("h2 is unreachable")
        return FakeResult(0, f"output of {command} on {self.name}\n")


class FakeLab:
    """A LabBackend (xenlab.lab.contract) of fake QEMU machines."""

    from xenlab.lab.lab import QEMU_CAPABILITIES as capabilities

    def __init__(self, spec, up_already: bool = False, checkpoints: tuple[str, ...] = ()):
        self.spec = spec
        self.name = spec.name
        self.run = SimpleNamespace(root=events().parent / "runs" / spec.name)
        self.machines = {n: FakeHost(self, n, "xen") for n in spec.hosts}
        if spec.services is not None:
            self.machines[spec.services.name] = FakeHost(self, spec.services.name, "services")
        self.state = SimpleNamespace(accel="tcg", checkpoints=[SimpleNamespace(tag=t) for t in checkpoints])
        self.bringup_stages: dict = {}

    @property
    def hosts(self):
        return [h for h in self.machines.values() if h.role == "xen"]

    @property
    def accel(self) -> str:
        return self.state.accel

    def checkpoint_tags(self) -> list[str]:
        return [c.tag for c in self.state.checkpoints]

    def inventory(self):
        """As a QEMU lab takes it: asked of every Xen host through its own command runner."""
        from xenlab.report.inventory import collect_inventory

        return [collect_inventory(h, self.accel) for h in self.hosts]

    def up(self, progress=lambda s, m: None, accel=None, tied=False, timeout=600):
        log("up", lab=self.name, accel=accel, tied=tied, timeout=timeout)
        progress("lab", "fake bring-up")
        self.bringup_stages = {n: {"boot": 1.0, "ssh": 2.5, "toolstack": 3.0} for n in self.machines}
        return self.bringup_stages

    def down(self):
        log("down", lab=self.name)
        return []

    def checkpoint_save(self, tag: str) -> float:
        log("checkpoint_save", lab=self.name, tag=tag)
        self.state.checkpoints.append(SimpleNamespace(tag=tag))
        return 0.1

    def checkpoint_restore(self, tag: str) -> float:
        log("checkpoint_restore", lab=self.name, tag=tag)
        return 0.1


class FakeProvider:
    """What the `xenlab_lab_provider` fixture returns in the test projects."""

    def create(self, spec, spec_path: str) -> FakeLab:
        log("create", lab=spec.name, path=spec_path)
        return FakeLab(spec)

    def attach(self, name: str) -> FakeLab:
        from xenlab.spec import parse_lab

        log("attach", lab=name)
        return FakeLab(parse_lab(f"name: {name}\nhosts:\n  h1:\n  h2:\n"), up_already=True)


@dataclass
class FakeToolstack:
    lab: object
    guests: list = field(default_factory=list)
    members: list | None = None

    def pool(self):
        return None if self.members is None else SimpleNamespace(members=self.members)

    def form_pool(self, members, settings):
        log("form_pool", members=members)
        self.members = members
        return self.pool()

    def create_vm(self, guest, host):
        log("create_vm", guest=guest.name, host=host, memory_mib=guest.memory_mib)
        self.guests.append(guest.name)
        return SimpleNamespace(name=guest.name, host=host, state="running", memory_mib=guest.memory_mib)

    def destroy_vm(self, vm):
        log("destroy_vm", guest=vm)


class FakeFault:
    def __init__(self, kind, target):
        self.kind, self.target = kind, target

    def heal(self):
        log("heal", kind=self.kind, target=self.target)
