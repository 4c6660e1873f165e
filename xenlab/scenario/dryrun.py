"""A scenario's plan on a lab, without starting or changing anything (`xenlab run --dry-run`).

For each step: the hosts, guests and faults it will act on, resolved as far as the file
tells (`to: other` is the pool's other member; a guest is where it was created or last
moved), the figures it will measure, the bound each expectation will use for the lab's
accelerator (`AccelExpectation.bound_for`), and what this lab cannot measure (reported
`not measurable`, never passed). A lab that is up gives its own accelerator; one that is
not gives the accelerator it would get (the probe of `lab.accel`), or the one asked for
(`--accel kvm|tcg`, planned as asked). What
keeps the scenario from running on the lab at all (`session.fit`) is listed as refused.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from ..lab.contract import LabBackend
from .command_steps import shell_of
from .expect import AccelExpectation
from .model import FIGURES, HOST_LOSS_FAULTS, OTHER, Scenario, Step, load_scenario, resolve_scenario_path
from .session import Problem, choose_lab, fit

DISK_FIGURES = ("integrity", "records")
HEARTBEAT_FIGURES = ("downtime", "heartbeats_lost", "heartbeat_slots_empty", "first_heartbeat", "recovery",
                     "downtime_p50", "downtime_p90", "downtime_max", "downtime_mean")


@dataclass
class PlannedStep:
    """One step as it will run on this lab."""

    number: str  # "3", or "5.1" for the first step inside repeat 5
    line: int | None
    title: str
    kind: str
    acts_on: list[str] = field(default_factory=list)  # resolved: "vm1: h1 -> h2", "power_cut on h1"
    measures: list[str] = field(default_factory=list)  # the figures its kind measures
    bounds: list[str] = field(default_factory=list)  # each expectation, with the bound this lab's accelerator uses
    not_measured: list[str] = field(default_factory=list)  # figures this lab (or this guest) cannot give
    times: int | None = None  # a repeat's rounds
    substeps: list[PlannedStep] = field(default_factory=list)


@dataclass
class DryRun:
    """What `xenlab run` would do, step by step, on a chosen lab."""

    scenario: str
    file: str
    lab: str
    backend: str
    running: bool
    accel: str
    accel_reason: str
    toolstack: str
    steps: list[PlannedStep]
    cannot: list[str]  # what the lab cannot do or measure, in a sentence each
    refused: list[Problem]  # what keeps the scenario from running on it (file lines)

    def to_json(self) -> dict[str, Any]:
        return {"schema": "xenlab.dry-run/1", **asdict(self)}


def accel_for(lab: LabBackend, running: bool, requested: str | None) -> tuple[str, str]:
    """The accelerator the run would judge by, and why: a lab that is up (or not a QEMU lab)
    has its own; a QEMU lab that is not up gets what `xenlab up` would choose."""
    if running or lab.spec.backend != "qemu":
        ignored = f"; --accel {requested} does not change a lab that is up" if requested and running else ""
        return lab.accel, ("the lab is up" if running else f"a {lab.spec.backend} lab") + ignored
    if requested in ("kvm", "tcg"):  # planned as asked: this machine need not run it (another one may)
        return requested, f"--accel {requested}"
    from ..lab.accel import detect_accel

    choice = detect_accel(requested or lab.spec.accel, lab.spec.nested_hvm)
    return choice.accel, f"what `xenlab up` would choose: {choice.reason}"


def dry_run(scenario_file: str, lab_ref: str | None = None, accel: str | None = None) -> DryRun:
    """The plan of `scenario_file` on its lab (or `lab_ref`); SpecError for a bad scenario file."""
    scenario = load_scenario(resolve_scenario_path(scenario_file))
    lab, running = choose_lab(scenario, lab_ref)
    chosen, reason = accel_for(lab, running, accel)
    return plan_on(scenario, lab, running, chosen, reason)


def plan_on(scenario: Scenario, lab: LabBackend, running: bool, accel: str, accel_reason: str = "") -> DryRun:
    planner = _Planner(scenario, lab, accel)
    steps = [planner.step(str(index + 1), ("steps", index), step) for index, step in enumerate(scenario.steps)]
    return DryRun(scenario=scenario.name, file=scenario.path, lab=lab.name, backend=lab.spec.backend,
                  running=running, accel=accel, accel_reason=accel_reason, toolstack=lab.capabilities.toolstack,
                  steps=steps, cannot=cannot_do(lab), refused=fit(scenario, lab))


def cannot_do(lab: LabBackend) -> list[str]:
    """What a lab's declared capabilities leave out, in words."""
    caps, kind = lab.capabilities, lab.spec.backend
    found = []
    if not caps.integrity_measurable:
        found.append(f"guests' disk records cannot be read back on this {kind} lab: integrity and records are "
                     "not measurable")
    if not caps.heartbeats_collected:
        found.append("nothing collects guests' heartbeats: downtime, recovery and heartbeat figures cannot be measured")
    missing = [k for k in ("power_cut", "freeze", "reset", "link_down", "impair", "partition", "storage_loss")
               if k not in caps.fault_kinds]
    if missing:
        found.append(f"faults it cannot inflict: {', '.join(missing)}")
    if not caps.checkpoints:
        found.append("no checkpoints (checkpoint steps are refused; every scenario starts from the lab as it is)")
    names = list(lab.spec.hosts) + ([lab.spec.services.name] if lab.spec.services is not None else [])
    shell_less = [n for n in names if shell_of(lab, n) is None]
    if shell_less:
        found.append(f"no shell on {', '.join(shell_less)}: run and wait-until steps there are refused")
    return found


class _Planner:
    """Plays the steps in order, keeping where each guest is, to resolve what each step acts on."""

    def __init__(self, scenario: Scenario, lab: LabBackend, accel: str):
        self.scenario, self.lab, self.accel = scenario, lab, accel
        self.members: list[str] = []
        self.where: dict[str, str | None] = {}  # guest -> host (None: wherever the pool put it)
        self.quiet: set[str] = set()  # guests that send no heartbeats
        self.silent_disk: set[str] = set()  # guests that write no records

    def step(self, number: str, loc: tuple, step: Step) -> PlannedStep:
        timed_only = step.wait is not None and step.wait.for_ is None  # a pause, or a shell fact: its duration
        planned = PlannedStep(number, self.scenario.line_of(loc), step.title, step.kind,
                              measures=["duration"] if timed_only else list(FIGURES[step.kind]))
        if step.repeat is not None:
            planned.times = step.repeat.times
            rounds: list[list[PlannedStep]] = []
            for _ in range(step.repeat.times):
                rounds.append([self.step(f"{number}.{i + 1}", loc + ("repeat", "steps", i), sub)
                               for i, sub in enumerate(step.repeat.steps)])
            planned.substeps = rounds[0]
            for i, sub in enumerate(planned.substeps):  # what later rounds act on, when it differs
                for later in rounds[1:]:
                    sub.acts_on += [a for a in later[i].acts_on if a not in sub.acts_on]
        else:
            planned.acts_on = self.acts_on(step)
        unmeasured = self.not_measured(step, planned.measures)
        planned.not_measured = [f"{name}: {why}" for name, why in unmeasured.items()]
        planned.bounds = [self.bound(name, expectation) + (" (not measured here: its verdict will be not_measured)"
                                                           if name in unmeasured else "")
                          for name, expectation in step.expect.items()]
        return planned

    def bound(self, name: str, expectation: Any) -> str:
        if not isinstance(expectation, AccelExpectation):
            return f"{name} {expectation.text}"
        chosen = expectation.bound_for(self.accel)
        if chosen is None:
            listed = ", ".join(key for key, _ in expectation.bounds)
            return f"{name}: no bound for accelerator {self.accel} (bounds for {listed}): not judged"
        key, bound = chosen
        return f"{name} {bound.text} (the bound for {key})"

    def not_measured(self, step: Step, measures: list[str]) -> dict[str, str]:
        """Figures of the step this lab (or its guest) cannot give, and why."""
        caps, kind = self.lab.capabilities, self.lab.spec.backend
        vm = self.guest_of(step)
        found: dict[str, str] = {}
        for figure in measures:
            if figure in DISK_FIGURES and not caps.integrity_measurable:
                found[figure] = f"a {kind} lab cannot read guests' disk records back"
            elif figure in DISK_FIGURES and vm in self.silent_disk:
                found[figure] = f"{vm} writes no records"
            elif figure in HEARTBEAT_FIGURES and not caps.heartbeats_collected:
                found[figure] = "nothing collects guests' heartbeats on this lab"
            elif figure in HEARTBEAT_FIGURES and vm in self.quiet:
                found[figure] = f"{vm} sends no heartbeats"
        return found

    @staticmethod
    def guest_of(step: Step) -> str | None:
        a = step.action
        if step.kind == "create_vm":
            return a.name
        if step.kind == "migrate":
            return a.vm
        if step.kind == "wait" and a.for_ is not None:
            return a.for_.vm
        return None

    def at(self, vm: str) -> str:
        return self.where.get(vm) or "wherever the pool runs it"

    def acts_on(self, step: Step) -> list[str]:
        a = step.action
        match step.kind:
            case "form_pool":
                self.members = [m for m in a.members if m not in a.expect_refused]
                refused = [f"{h} refused ({why!r})" for h, why in a.expect_refused.items()]
                return [f"pool {self.scenario.pool.name}: {', '.join(a.members)} (master {a.members[0]})", *refused]
            case "create_vm":
                self.where[a.name] = a.host
                if not a.heartbeat:
                    self.quiet.add(a.name)
                if not a.writer:
                    self.silent_disk.add(a.name)
                protected = ", protected" if a.name in self.scenario.protected_guests() else ""
                return [f"{a.name}: {a.type}, {a.memory_mib} MiB, {a.vcpus} vCPU on {a.host}{protected}"]
            case "destroy_vm":
                host = self.at(a)
                self.where.pop(a, None)
                return [f"{a} on {host}"]
            case "migrate":
                source = self.where.get(a.vm)
                if a.to == OTHER:
                    others = [m for m in self.members if m != source]
                    target = others[0] if source is not None and len(others) == 1 else None
                else:
                    target = a.to
                self.where[a.vm] = target
                told = [f"{a.vm}: {source or '?'} -> {target or 'the pool’s other member'}"]
                if a.during is not None:
                    f = a.during.fault
                    healed = f", healed {a.during.heal_after_s:g} s later" if a.during.heal_after_s else ""
                    told.append(f"{f.kind} on {', '.join(f.targets)} {a.during.after_s:g} s into the migration{healed}")
                return told
            case "evacuate":
                moved = [vm for vm, host in self.where.items() if host == a.host]
                for vm in moved:
                    self.where[vm] = None
                return [f"{a.host}: its guests ({', '.join(moved) or 'none known'}) to the other members"]
            case "fault":
                guests = [vm for vm, host in self.where.items() if host in a.targets]
                if a.kind in HOST_LOSS_FAULTS:
                    for vm in guests:
                        self.where[vm] = None  # restarted where the pool chooses, if protected
                extra = ", ".join(f"{k} {v}" for k, v in a.params().items())
                on = f"; guests there: {', '.join(guests)}" if guests else ""
                return [f"{a.kind} on {', '.join(a.targets)}" + (f" ({extra})" if extra else "")
                        + (f", named {a.name}" if a.name else "") + on]
            case "heal":
                return [f"heal {a}"]
            case "wait":
                if a.until is not None:
                    return [f"on {a.until.host}, until {a.until.describe()} (at most {a.timeout:g} s)"]
                if a.for_ is None:
                    return [f"pause {a.seconds:g} s"]
                if a.for_.vm_on is not None:
                    self.where[a.for_.vm_on.vm] = a.for_.vm_on.host
                return [f"until {a.for_.describe()} (at most {a.timeout:g} s)"]
            case "assert":
                return [c.describe() for c in a]
            case "checkpoint":
                return [f"save {a.save}" if a.save else f"restore {a.restore}"]
            case "run":
                return [f"on {a.host}: {a.command}", f"expects {a.expect.exit_text}"
                        + (f", stdout ~ /{a.expect.stdout}/" if a.expect.stdout else "")
                        + (f", stderr ~ /{a.expect.stderr}/" if a.expect.stderr else "")
                        + f", within {a.expect.within:g} s"]
        return []
