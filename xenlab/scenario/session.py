"""One road from a scenario file to its results, for `xenlab run`, pytest and bench/.

    plan_run (validate everything, choose the lab; nothing starts)
      -> start (find the lab up, or bring it up; back to `ready` unless told not to)
      -> execute (drivers for the lab, host inventory, run, results)

The pytest plugin holds its labs itself (one boot per session), so for a scenario item
it takes the same steps on the lab it holds: `fit`, `begin`, then `run_on`.
Everything that can be refused is refused before a machine starts: the scenario file,
the lab file, and the scenario against the lab's hosts and declared capabilities.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..drivers import drivers_for
from ..errors import SpecError, XenlabError
from ..lab.contract import LabBackend, restore_ready, save_ready
from ..lab.labs import only_running_lab, open_lab, resolve_lab
from ..results import HostInventory, RunResults, ScenarioResult
from ..waiting import Progress, quiet
from .command_steps import shell_of
from .model import Scenario, check_against_lab, load_scenario, resolve_scenario_path
from .runner import EventCallback, run_scenario

Problem = tuple[int | None, str]


@dataclass
class Plan:
    """A validated scenario and the lab it will run on (up already, or to be brought up)."""

    scenario: Scenario
    lab: LabBackend
    running: bool  # the lab was found up (attached)
    started_here: bool = False

    @property
    def lab_name(self) -> str:
        return self.lab.name


def plan_run(scenario_file: str, lab_ref: str | None = None, base_dirs: Sequence[Path] | None = None) -> Plan:
    """Validate everything and choose the lab; raises SpecError / XenlabError, starts nothing."""
    scenario = load_scenario(resolve_scenario_path(scenario_file))
    lab, running = choose_lab(scenario, lab_ref, base_dirs)
    problems = fit(scenario, lab)
    if problems:
        raise SpecError(scenario.path, problems)
    return Plan(scenario, lab, running=running)


def choose_lab(scenario: Scenario, lab_ref: str | None = None,
               base_dirs: Sequence[Path] | None = None) -> tuple[LabBackend, bool]:
    """The lab a run of `scenario` uses (`lab_ref`, else the scenario's, else the only one up),
    attached if it is up, else built from its file (not started); and whether it is up."""
    ref = lab_ref or scenario.lab
    if ref is None:
        try:
            ref = only_running_lab()
        except XenlabError as exc:
            raise XenlabError(f"{scenario.path} names no lab: choose one with --lab ({exc})") from None
    found = resolve_lab(ref, base_dirs, attach="first")
    return open_lab(found), found.running


def fit(scenario: Scenario, lab: LabBackend) -> list[Problem]:
    """What keeps `scenario` from running on `lab`: its hosts, and what the lab declares it can do."""
    return check_against_lab(scenario, lab.spec) + capability_problems(scenario, lab)


def capability_problems(scenario: Scenario, lab: LabBackend) -> list[Problem]:
    """Steps asking for what the lab's backend does not offer, with their lines."""
    caps, spec = lab.capabilities, lab.spec
    kind = spec.backend
    found: list[Problem] = []
    for loc, fault in scenario.faults():  # fault steps, and faults struck during a migration
        if fault.kind not in caps.fault_kinds:
            offered = ", ".join(caps.fault_kinds)
            found.append((scenario.line_of(loc),
                          f"fault {fault.kind} is not offered by {kind} lab {spec.name} (it offers {offered})"))
        elif (not caps.services_faults and spec.services is not None and spec.services.name in fault.targets
              and fault.kind != "storage_loss"):  # the shared storage is lost, however the lab does it
            found.append((scenario.line_of(loc + ("target",)),
                          f"{kind} lab {spec.name} cannot inflict faults on its services node {spec.services.name}"))
    for loc, step in scenario.walk():
        if step.checkpoint is not None and not caps.checkpoints:
            found.append((scenario.line_of(loc + ("checkpoint",)),
                          f"checkpoints are not supported on {kind} lab {spec.name}"))
        guest = step.create_vm
        if guest is not None and guest.type not in caps.guest_types:
            found.append((scenario.line_of(loc + ("create_vm", "type")),
                          (f"guest {guest.name} is a {guest.type} guest, but lab {spec.name} runs "
                           f"{', '.join(caps.guest_types)} guests only (a lab file asks for more with "
                           "`guest_types`, and its host images must declare them)")))
        if guest is not None and guest.heartbeat and not caps.heartbeats_collected:
            found.append((scenario.line_of(loc + ("create_vm",)),
                          (f"guest {guest.name} sends heartbeats, but nothing collects them on {kind} lab "
                           f"{spec.name} (give its services node `ssh:` so xenlab runs its collector there, or "
                           "create the guest with `heartbeat: false`)")))
    machines = set(spec.hosts) | ({spec.services.name} if spec.services is not None else set())
    for loc, host in scenario.shell_uses():  # an unknown host is check_against_lab's to name
        if host in machines and shell_of(lab, host) is None:
            found.append((scenario.line_of(loc), (f"this step runs a command on {host}, but {kind} lab "
                                                  f"{spec.name} has no shell there (capability: shell; "
                                                  + ("a sim lab's hosts are xapi endpoints)" if kind == "sim" else
                                                     "give the host `ssh:` in the lab file)"))))
    return sorted(found, key=lambda problem: (problem[0] is None, problem[0] or 0))  # in file order


def start(plan: Plan, progress: Progress = quiet, as_is: bool = False, accel: str | None = None,
          timeout: float = 600) -> None:
    """Bring the plan's lab up if it is not (a QEMU lab stays up; `ready` is saved), else
    restore its `ready` checkpoint unless `as_is`."""
    if plan.running or plan.started_here:
        if not as_is:
            begin(plan.lab, progress)
        return
    bring_up(plan.lab, progress, accel=accel, timeout=timeout)
    plan.started_here = True


def bring_up(lab: LabBackend, progress: Progress = quiet, accel: str | None = None, timeout: float = 600,
             tied: bool = False, checkpoint: bool = True) -> dict[str, dict[str, float]]:
    """Bring `lab` up and (with `checkpoint`) save its `ready` checkpoint; seconds per host and stage."""
    stages = lab.up(progress=progress, accel=accel, tied=tied, timeout=timeout)
    if checkpoint:
        try:
            save_ready(lab, progress)
        except BaseException:
            lab.down()
            raise
    return stages


def begin(lab: LabBackend, progress: Progress = quiet) -> float | None:
    """Every scenario starts from the lab's `ready` checkpoint, where the lab has one."""
    return restore_ready(lab, progress)


def run_on(scenario: Scenario, lab: LabBackend, on_event: EventCallback | None = None,
           keep_going: bool = False) -> ScenarioResult:
    """Run `scenario` on the running `lab` through the drivers that serve it.

    `keep_going`: missed expectations do not stop the run (benchmarks measure everything)."""
    drivers = drivers_for(lab)
    services = lab.spec.services
    return run_scenario(scenario, lab, drivers.toolstack, drivers.observer, drivers.faults, on_event,
                        poll_s=lab.capabilities.poll_s, shared_sr=services.nfs_export if services else None,
                        accel=lab.accel, keep_going=keep_going)


def inventory_of(lab: LabBackend, progress: Progress = quiet) -> list[HostInventory]:
    """The hosts' inventory, taken before the scenario touches them."""
    progress("lab", "taking the hosts' inventory")
    return lab.inventory()


def execute(plan: Plan, on_event: EventCallback | None = None, progress: Progress = quiet,
            inventory: bool = True, keep_going: bool = False) -> RunResults:
    """Take the inventory, run the scenario on the running lab, gather the run's results."""
    if not (plan.running or plan.started_here):
        raise XenlabError(f"lab {plan.lab_name} is not up")
    hosts = inventory_of(plan.lab, progress) if inventory else []
    result = run_on(plan.scenario, plan.lab, on_event, keep_going)
    return RunResults(lab=plan.lab_name, accel=plan.lab.accel, scenarios=[result], inventory=hosts,
                      bringup=dict(plan.lab.bringup_stages) if plan.started_here else {},
                      lab_choices=plan.lab.spec.choices_under_test())


def finish(plan: Plan) -> None:
    """A lab that ends with its process (the simulator) goes now; a QEMU lab stays up."""
    if plan.started_here and not plan.lab.capabilities.outlives_process:
        plan.lab.down()


def default_results_path(scenario: Scenario, now: float | None = None, base: Path | None = None) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(now if now is not None else time.time()))
    return (base or Path("results")) / f"{scenario.name}-{stamp}.json"
