"""The labs of this user: which lab a name or file means, and starting and stopping labs.

`resolve_lab` is the one resolver of lab names and files (the CLI, the scenario session
and the pytest plugin all use it); `up_lab` is the idempotent bring-up behind `xenlab up`;
`down_lab` and `down_all` stop labs and sweep what a crash left behind.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from ..errors import XenlabError
from ..spec import NAME_PATTERN, LabSpec, load_lab
from ..waiting import Progress, quiet
from .contract import LabBackend, save_ready
from .lab import Lab, attach_lab, running_labs, stray_lab_dirs
from .processes import sweep
from .rundir import RunDir, abandoned_run_bases, release_run_base, runs_base
from .sim import SimLab
from .static import StaticLab
from .warm import WarmCache

Attach = Literal["first", "last", "never", "only"]
LAB_SUFFIXES = (".yaml", ".yml")


@dataclass(frozen=True)
class LabRef:
    """What a lab reference means: a lab's name, its file (if any), and whether it is up."""

    name: str
    path: str | None  # the lab file; None for a running lab named by name
    running: bool


def looks_like_file(ref: str) -> bool:
    return ref.endswith(LAB_SUFFIXES) or "/" in ref


def resolve_lab(ref: str, base_dirs: Sequence[Path] | None = None, attach: Attach = "first") -> LabRef:
    """A lab name or file to a LabRef; a file is validated now (SpecError with its line).

    Relative files, and `labs/NAME.yaml` for a name, are looked for under each of
    `base_dirs` in turn (default: the current directory). `attach` says how running labs
    count: "first" (a running lab of that name wins; `xenlab run`), "last" (a file wins,
    else the name of a running lab; `pytest --reuse-lab`), "never" (files only; pytest), "only"
    (running labs only, a file naming its lab; `xenlab ssh/status/...`).
    """
    bases = list(base_dirs or [Path.cwd()])
    up = running_labs()
    if looks_like_file(ref):
        path = _existing(Path(ref), bases)
        spec = load_lab(path)  # a missing or invalid file is refused here, with its line
        running = spec.name in up and spec.backend == "qemu"
        if attach == "only" and not running:
            raise XenlabError(f"lab {spec.name} (from {ref}) is not up")
        return LabRef(spec.name, str(path), running and attach != "never")
    if not re.fullmatch(NAME_PATTERN, ref):
        raise XenlabError(f"{ref!r} is neither a lab name ({NAME_PATTERN}) nor a lab file")
    if ref in up and attach in ("first", "only"):
        return LabRef(ref, None, True)
    if attach == "only":
        raise XenlabError(f"lab {ref!r} is not up (up: {', '.join(up) or 'none'})")
    candidates = [base / "labs" / f"{ref}{suffix}" for base in bases for suffix in LAB_SUFFIXES]
    found = next((c for c in candidates if c.exists()), None)
    if found is not None:
        spec = load_lab(found)
        return LabRef(spec.name, str(found), spec.name in up and spec.backend == "qemu" and attach != "never")
    if attach == "last":  # a running lab's name (it is attached when needed)
        return LabRef(ref, None, ref in up)
    looked = ", ".join(str(c) for c in candidates if c.suffix == ".yaml")
    raise XenlabError(f"no lab file for {ref!r} (looked at {looked})" + ("" if attach == "never" else
                                                                        f"; labs up: {', '.join(up) or 'none'}"))


def _existing(path: Path, bases: list[Path]) -> Path:
    if path.is_absolute():
        return path
    for base in bases:
        if (base / path).exists():
            return base / path if base != Path.cwd() else path
    return path


def only_running_lab() -> str:
    """The name of the one lab that is up (what commands use when no lab is named)."""
    labs = running_labs()
    if len(labs) == 1:
        return labs[0]
    if not labs:
        raise XenlabError("no lab is up; start one with `xenlab up labs/xen-pool2.yaml`")
    raise XenlabError(f"several labs are up ({', '.join(labs)}); choose one with --lab")


def running_lab(ref: str | None) -> Lab:
    """The running QEMU lab `ref` names (a name or its file), or the only one up."""
    return attach_lab(resolve_lab(ref, attach="only").name if ref else only_running_lab())


def acting_lab(ref: str | None) -> Lab | StaticLab:
    """The lab whose hosts `xenlab ssh/console/power/link` act on: a running QEMU lab (by
    name or file, or the only one up), or a static lab from its file (its hosts exist
    whether or not xenlab ran anything: its SSH and BMCs are used as the file says). A
    simulator lives inside the process that runs it, so no command reaches one from outside."""
    if ref is None:
        return running_lab(None)
    found = resolve_lab(ref, attach="first")
    if found.running:
        return attach_lab(found.name)
    if found.path is not None:
        lab = make_lab(load_lab(found.path), found.path)
        if isinstance(lab, StaticLab):
            return lab
        if isinstance(lab, SimLab):
            raise XenlabError(f"lab {found.name} is a simulator: it runs inside `xenlab run` or pytest, and no "
                              "command reaches its hosts from outside")
    raise XenlabError(f"lab {found.name} is not up (`xenlab up {found.path or found.name}`)")


def make_lab(spec: LabSpec, spec_path: str = "") -> LabBackend:
    """A lab object of the backend its spec names (nothing starts)."""
    if spec.backend == "sim":
        return SimLab(spec, spec_path)
    if spec.backend == "static":
        return StaticLab(spec, spec_path)
    return Lab(spec, spec_path)


def open_lab(ref: LabRef) -> LabBackend:
    """The lab a LabRef means: attached if it is up, else built from its file (not started)."""
    if ref.running:
        return attach_lab(ref.name)
    assert ref.path is not None
    return make_lab(load_lab(ref.path), ref.path)


def lab_status(ref: str | None) -> dict:
    """What `xenlab status` shows: a running QEMU lab's state, or a static lab's hosts as
    they answer now (a static lab is never "up": its hosts exist before and after)."""
    if ref is None:
        return running_lab(None).status()
    found = resolve_lab(ref, attach="first")
    if found.running:
        return attach_lab(found.name).status()
    assert found.path is not None
    lab = make_lab(load_lab(found.path), found.path)
    if isinstance(lab, StaticLab):
        return lab.status(probe=True)
    raise XenlabError(f"lab {found.name} (from {found.path}) is not up")


# -- up and down ----------------------------------------------------------------------------
@dataclass
class UpOutcome:
    lab: Lab
    already_up: bool  # the same lab was up already: nothing was started
    ready_seconds: float | None = None  # how long saving `ready` took, if it was saved


def up_lab(spec: LabSpec, spec_path: str, progress: Progress = quiet, accel: str | None = None,
           timeout: float = 600, checkpoint: bool = True, cold: bool = False) -> UpOutcome:
    """Bring a QEMU lab up unless the same lab is up already (then it is left as it is).

    A lab of the same name that runs another spec, or lost a machine, is refused by
    `Lab.up` with what to do. With `checkpoint`, `ready` is saved right after bring-up (and
    the lab restored warm from the cache when it can; `cold` boots it all the same)."""
    lab = Lab(spec, spec_path)  # refuses a sim lab with what to run instead
    if spec.name in running_labs():
        running = attach_lab(spec.name)
        if running.spec == spec and all(h.process_alive() for h in running.machines.values()):
            return UpOutcome(running, already_up=True)
    lab.up(progress=progress, accel=accel, timeout=timeout, warm=None if checkpoint else False, cold=cold)
    seconds = save_ready(lab, progress) if checkpoint else None
    return UpOutcome(lab, already_up=False, ready_seconds=seconds)


def forget_warm(name: str) -> int:
    """Remove lab `name`'s warm states from the cache; how many."""
    return len(WarmCache().forget(name))


def down_lab(name: str) -> list[int]:
    """Stop everything of lab `name` (even with damaged state); the pids stopped."""
    run = RunDir.for_lab(name)
    if not run.root.exists():
        raise XenlabError(f"lab {name!r} is not up")
    try:
        return attach_lab(name).down()
    except XenlabError:
        stopped = sweep(run.root)  # damaged state: still stop what belongs to it
        shutil.rmtree(run.root, ignore_errors=True)
        return stopped


@dataclass
class DownAll:
    labs: dict[str, int] = field(default_factory=dict)  # lab -> processes stopped
    strays: dict[str, int] = field(default_factory=dict)  # run directory without state -> processes stopped
    leftover: int = 0  # processes of the runs directory that no lab owned
    abandoned: dict[str, int] = field(default_factory=dict)  # run base of a dead owner -> processes stopped


def down_all() -> DownAll:
    """Every lab of this user down, stray run directories removed, any stray process stopped."""
    done = DownAll()
    for name in running_labs():
        done.labs[name] = len(down_lab(name))
    for stray in stray_lab_dirs():
        done.strays[str(stray)] = len(sweep(stray))
        shutil.rmtree(stray, ignore_errors=True)
    done.leftover = len(sweep(runs_base()))
    done.abandoned = sweep_abandoned_run_bases()
    return done


def sweep_abandoned_run_bases() -> dict[str, int]:
    """Stop what dead owners left in their run bases (a test session killed while a CLI
    command it ran had started machines untied); run base -> processes stopped. Their
    files stay: they are the owner's (pytest removes its old temporary directories)."""
    stopped = {}
    for base in abandoned_run_bases():
        stopped[str(base)] = len(sweep(base))
        release_run_base(base)
    return stopped
