"""From a scenario file to results: validate, find or start its lab, build the drivers, run.

This is what `xenlab run` does, kept here so that the CLI and the pytest plugin share it.
Everything that can be refused is refused before a machine starts: the scenario file,
the lab file, the scenario against the lab, and the presence of the drivers.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import SpecError, XenlabError
from ..results import RunResults, ScenarioResult
from .model import Scenario, check_against_lab, load_scenario, resolve_scenario_path
from .runner import EventCallback, run_scenario

Progress = Callable[[str, str], None]  # (subject, message), as Lab.up reports it

# Where the drivers come from: (module, callable(lab)), provided by the layers below.
FACTORIES = {
    "toolstack": ("xenlab.toolstack", "make_toolstack"),
    "observer": ("xenlab.observe", "LabObserver"),
    "faults": ("xenlab.faults", "Faults"),
}
# A sim lab (backend: sim) is its own observer and fault injector.
SIM_FACTORIES = {"observer": lambda lab: lab.observer(), "faults": lambda lab: lab.faults()}


@dataclass
class Plan:
    """A validated scenario and the lab it will run on (attached, or to be brought up)."""

    scenario: Scenario
    lab_spec: Any  # LabSpec
    lab_path: str = ""
    lab: Any = None  # a running Lab, or None until `start_lab`
    started_here: bool = False
    factories: dict[str, Callable[[Any], Any]] = field(default_factory=dict)

    @property
    def lab_name(self) -> str:
        return self.lab_spec.name


def plan_run(scenario_file: str, lab_ref: str | None = None,
             factories: dict[str, Callable[[Any], Any]] | None = None) -> Plan:
    """Validate everything and choose the lab; raises SpecError / XenlabError, starts nothing."""
    from ..lab import attach_lab, running_labs
    from ..spec import load_lab, resolve_lab_path

    scenario = load_scenario(resolve_scenario_path(scenario_file))
    ref = lab_ref or scenario.lab
    running = running_labs()
    if ref is None:
        if len(running) != 1:
            up = ", ".join(running) or "none"
            raise XenlabError(f"{scenario.path} names no lab: choose one with --lab (labs up: {up})")
        ref = running[0]
    lab = None
    path = ""
    if ref.endswith((".yaml", ".yml")) or "/" in ref:
        path = str(resolve_lab_path(ref))
        spec = load_lab(path)
        if spec.name in running and spec.backend != "sim":
            lab = attach_lab(spec.name)
            spec = lab.spec
    elif ref in running:
        lab = attach_lab(ref)
        spec = lab.spec
    else:
        path = str(resolve_lab_path(ref))
        spec = load_lab(path)
    problems = check_against_lab(scenario, spec)
    if spec.backend == "sim":
        from ..simlab import scenario_problems

        problems += scenario_problems(scenario, spec)
    if problems:
        raise SpecError(scenario.path, problems)
    chosen = dict(factories or {})
    if spec.backend == "sim":
        chosen = {**SIM_FACTORIES, **chosen}
    for role, (module, name) in FACTORIES.items():
        if role not in chosen:
            chosen[role] = _factory(module, name, role)
    return Plan(scenario, spec, path, lab, factories=chosen)


def start_lab(plan: Plan, progress: Progress) -> None:
    """Bring the plan's lab up if it is not running (it stays up afterwards)."""
    if plan.lab is not None:
        return
    from ..lab import Lab
    from ..simlab import SimLab

    lab = (SimLab if plan.lab_spec.backend == "sim" else Lab)(plan.lab_spec, plan.lab_path)
    lab.up(progress=progress)
    plan.lab, plan.started_here = lab, True


def execute(plan: Plan, on_event: EventCallback | None = None, keep_going: bool = False) -> RunResults:
    """Build the drivers for the running lab, run the scenario, gather the run's results.

    `keep_going`: missed expectations do not stop the run (benchmarks measure everything)."""
    if plan.lab is None:
        raise XenlabError(f"lab {plan.lab_name} is not up")
    toolstack = plan.factories["toolstack"](plan.lab)
    observer = plan.factories["observer"](plan.lab)
    faults = plan.factories["faults"](plan.lab)
    accel = ""
    try:
        accel = plan.lab.state.accel
    except (XenlabError, AttributeError):
        pass
    result: ScenarioResult = run_scenario(plan.scenario, plan.lab, toolstack, observer, faults, on_event,
                                          poll_s=getattr(plan.lab, "poll_s", 1.0), accel=accel,
                                          keep_going=keep_going)
    return RunResults(lab=plan.lab_name, accel=accel, scenarios=[result],
                      bringup=dict(getattr(plan.lab, "bringup_stages", {}) or {}) if plan.started_here else {})


def default_results_path(scenario: Scenario, now: float | None = None, base: Path | None = None) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(now if now is not None else time.time()))
    return (base or Path("results")) / f"{scenario.name}-{stamp}.json"


def _factory(module: str, name: str, role: str) -> Callable[[Any], Any]:
    try:
        found = getattr(importlib.import_module(module), name, None)
    except ImportError as exc:
        raise XenlabError(f"no {role} driver: cannot import {module} ({exc})") from None
    if found is None:
        raise XenlabError(f"no {role} driver: {module}.{name}(lab) does not exist yet")
    return found
