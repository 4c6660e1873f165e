"""Scenario files (`scenarios/*.yaml`) as validated, typed models.

A scenario is a list of steps, each one kind of action (form a pool, create or destroy a
guest, migrate, inject or heal a fault, wait, assert, repeat, checkpoint, run a command) with optional
expectations on the figures that step measures. Everything that can be checked before a
lab is touched is checked here, with the file and line: unknown keys, unreadable
expectations, figures a step does not measure, guests used before they are created,
faults healed that were never injected; `check_against_lab` adds host names and sizes.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, PlainSerializer, PlainValidator, PrivateAttr, field_validator, model_validator

from ..lab.contract import FaultKind
from ..recipe_facts import GuestType
from ..results import RENAMED_FIGURES, figure_meaning
from ..spec import LabSpec, Name
from ..validation import StrictModel, validate_document
from ..yamlfile import LocatedDocument, load_located, parse_located
from .commands import RunCommand, Until, short
from .expect import AccelExpectation, Expectation, parse_expectation
from .replay import OTHER, Loc, Problem, Replay

HOST_LOSS_FAULTS = ("power_cut", "partition")  # the pool should fail over the target's protected guests
IMPAIRMENT_PARAMS = ("loss_pct", "delay_ms", "bandwidth_kbit")
# Planning limits: validation stays linear, and a scenario that would run for days is refused.
MAX_REPEAT_DEPTH = 4  # repeats inside repeats
MAX_PLANNED_STEPS = 10_000  # steps the scenario would run, repeats multiplied out

# What each kind of step measures (figure -> unit): expectations may name only these.
FIGURES: dict[str, dict[str, str]] = {
    "form_pool": {"duration": "s", "members": "count", "refused": "count"},
    "create_vm": {"duration": "s", "first_heartbeat": "s"},
    "destroy_vm": {"duration": "s"},
    "migrate": {"duration": "s", "downtime": "s", "heartbeats_lost": "count", "heartbeat_slots_empty": "count",
                "integrity": "bool", "records": "count", "completed": "bool", "fault_at": "s"},
    "evacuate": {"duration": "s", "migrations": "count", "downtime": "s", "heartbeats_lost": "count",
                 "heartbeat_slots_empty": "count", "integrity": "bool", "records": "count"},
    "fault": {"duration": "s"},
    "heal": {"duration": "s"},
    "wait": {"duration": "s", "detection": "s", "recovery": "s", "since_fault": "s"},
    "assert": {"duration": "s", "integrity": "bool", "records": "count"},
    "repeat": {"duration": "s", "iterations": "count", "migrations": "count", "downtime_p50": "s",
               "downtime_p90": "s", "downtime_max": "s", "downtime_mean": "s", "heartbeats_lost": "count"},
    "checkpoint": {"duration": "s"},
    "run": {"duration": "s"},
}
KINDS = tuple(FIGURES)

ExpectationField = Annotated[Expectation | AccelExpectation, PlainValidator(parse_expectation), PlainSerializer(lambda e: e.text)]


class PoolSection(StrictModel):
    """The pool's policy (mirrors toolstack.base.PoolSettings)."""

    name: Name = "pool"
    detection_timeout_s: float = Field(30.0, gt=0, le=600, description="a host silent this long is declared dead")
    protected: list[Name] = Field(default_factory=list, description="guests restarted elsewhere, in priority order")


class FormPool(StrictModel):
    members: list[Name] = Field(min_length=1, description="hosts; the first is the master")
    expect_refused: dict[Name, str] = Field(default_factory=dict,
                                            description="host -> a substring of the reason it must be refused for")

    @model_validator(mode="after")
    def _refused_are_members(self) -> FormPool:
        strangers = [h for h in self.expect_refused if h not in self.members]
        if strangers:
            raise ValueError(f"expect_refused names {', '.join(strangers)}, which is not in members")
        if len(set(self.members)) != len(self.members):
            raise ValueError("a host is listed twice in members")
        return self


class CreateVM(StrictModel):
    name: Name
    host: Name
    type: GuestType = Field("pv", description="pv | pvh | hvm; the lab's host image must declare it")
    memory_mib: int = Field(128, ge=32, le=65536)
    vcpus: int = Field(1, ge=1, le=16)
    disk_mib: int = Field(64, ge=8, le=65536)
    protected: bool = Field(False, description="add to the pool's protected guests (after pool.protected)")
    heartbeat: bool = Field(True, description="the guest sends heartbeats; needed for downtime and recovery")
    writer: bool = Field(True, description="the guest writes verifiable records to its disk")
    ready_timeout_s: float = Field(180.0, gt=0, le=3600, description="how long its first heartbeat may take")


class Evacuate(StrictModel):
    host: Name
    settle_s: float = Field(30.0, gt=0, le=600)


class FaultStep(StrictModel):
    kind: FaultKind
    target: Name | list[Name] = Field(description="host(s); for partition, the side cut off from the rest")
    name: Name | None = Field(None, description="to heal this fault by name")
    network: Name | None = Field(None, description="link_down, impair, partition: which lab network")
    loss_pct: float | None = Field(None, ge=0, le=100)
    delay_ms: float | None = Field(None, ge=0, le=60000)
    bandwidth_kbit: int | None = Field(None, ge=1)

    @field_validator("target")
    @classmethod
    def _some_target(cls, value: str | list[str]) -> str | list[str]:
        if isinstance(value, list) and not value:
            raise ValueError("name at least one target host")
        if isinstance(value, list):
            twice = sorted({t for t in value if value.count(t) > 1})
            if twice:
                raise ValueError(f"{', '.join(twice)} is listed twice: name each target host once")
        return value

    @model_validator(mode="after")
    def _params_fit_the_kind(self) -> FaultStep:
        given = [p for p in IMPAIRMENT_PARAMS if getattr(self, p) is not None]
        if self.kind == "impair" and not given:
            raise ValueError(f"an impair fault needs at least one of {', '.join(IMPAIRMENT_PARAMS)}")
        if self.kind != "impair" and given:
            raise ValueError(f"{', '.join(given)} only appl{'y' if len(given) > 1 else 'ies'} to impair faults, "
                             f"not {self.kind}")
        if self.network is not None and self.kind not in ("link_down", "impair", "partition"):
            raise ValueError(f"network only applies to link_down, impair and partition faults, not {self.kind}")
        return self

    @property
    def targets(self) -> list[str]:
        return [self.target] if isinstance(self.target, str) else list(self.target)

    @property
    def label(self) -> str:
        return self.name or f"{self.kind} {','.join(self.targets)}"

    def params(self) -> dict[str, Any]:
        """Keyword arguments for `faults.inject` (only what the scenario set)."""
        keys = ("network",) + IMPAIRMENT_PARAMS
        return {k: getattr(self, k) for k in keys if getattr(self, k) is not None}


class FaultDuring(StrictModel):
    """A fault that strikes while a migration runs: the reliability of the operation itself."""

    after_s: float = Field(gt=0, le=600, description="seconds after the migration starts")
    fault: FaultStep
    heal_after_s: float | None = Field(None, gt=0, le=600,
                                       description="heal it this long after it struck, while the migration runs")


class Migrate(StrictModel):
    vm: Name
    to: Name = Field(description=f"a host, or {OTHER!r}: the pool's other member")
    settle_s: float = Field(30.0, gt=0, le=600, description="how long heartbeats may take to resume afterwards")
    during: FaultDuring | None = Field(None, description="a fault injected while the migration runs; the "
                                       "migration may then fail, which is reported (`completed`), not a failure")


class VMOn(StrictModel):
    vm: Name
    host: Name


class Condition(StrictModel):
    """One checkable fact about the pool; exactly one key."""

    vm_running: Name | None = None
    vm_on: VMOn | None = None
    host_dead: Name | None = None
    host_alive: Name | None = None
    heartbeats: Name | None = Field(None, description="the guest's heartbeats are arriving")
    data_intact: Name | None = Field(None, description="the guest's disk records verify")

    @model_validator(mode="after")
    def _exactly_one(self) -> Condition:
        set_ = [k for k in type(self).model_fields if getattr(self, k) is not None]
        if len(set_) != 1:
            raise ValueError(f"a condition has exactly one of {', '.join(type(self).model_fields)}"
                             + (f" (got {', '.join(set_)})" if set_ else ""))
        return self

    @property
    def kind(self) -> str:
        return next(k for k in type(self).model_fields if getattr(self, k) is not None)

    @property
    def vm(self) -> str | None:
        if self.vm_on is not None:
            return self.vm_on.vm
        return self.vm_running or self.heartbeats or self.data_intact

    @property
    def host(self) -> str | None:
        if self.vm_on is not None:
            return self.vm_on.host
        return self.host_dead or self.host_alive

    def describe(self) -> str:
        """"vm1 on h2", "h1 dead", "heartbeats of vm1": for titles and messages."""
        if self.vm_on is not None:
            return f"{self.vm_on.vm} on {self.vm_on.host}"
        words = {"vm_running": "{} running", "host_dead": "{} dead", "host_alive": "{} alive",
                 "heartbeats": "heartbeats of {}", "data_intact": "data of {} intact"}
        return words[self.kind].format(getattr(self, self.kind))


class Wait(StrictModel):
    for_: Condition | None = Field(None, alias="for")
    until: Until | None = Field(None, description="a fact checked through a machine's shell until it holds")
    seconds: float | None = Field(None, gt=0, le=3600, description="a plain pause")
    timeout: float = Field(120.0, gt=0, le=3600, description="how long the condition may take")

    @model_validator(mode="after")
    def _condition_or_seconds(self) -> Wait:
        if sum(x is not None for x in (self.for_, self.until, self.seconds)) != 1:
            raise ValueError("a wait has either `for: CONDITION` or `until: SHELL_CONDITION` (each with an optional "
                             "timeout), or `seconds: N`")
        return self


class Checkpoint(StrictModel):
    save: str | None = Field(None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,39}$")
    restore: str | None = Field(None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,39}$")

    @model_validator(mode="after")
    def _one(self) -> Checkpoint:
        if (self.save is None) == (self.restore is None):
            raise ValueError("a checkpoint step has either `save: TAG` or `restore: TAG`")
        return self


class Repeat(StrictModel):
    times: int = Field(ge=1, le=1000)
    steps: list[Step] = Field(min_length=1)


class Step(StrictModel):
    """One step: a name, exactly one kind of action, and expectations on what it measures."""

    name: str | None = Field(None, min_length=1, max_length=100)
    expect: dict[str, ExpectationField] = Field(default_factory=dict)
    form_pool: FormPool | None = None
    create_vm: CreateVM | None = None
    destroy_vm: Name | None = Field(None, description="a guest to stop and delete, its disk with it")
    migrate: Migrate | None = None
    evacuate: Evacuate | None = None
    fault: FaultStep | None = None
    heal: Name | None = Field(None, description="a fault's name, or `all`")
    wait: Wait | None = None
    assert_: list[Condition] | None = Field(None, alias="assert", min_length=1)
    repeat: Repeat | None = None
    checkpoint: Checkpoint | None = None
    run: RunCommand | None = Field(None, description="a command on a machine's shell, its exit status and output "
                                                     "judged")

    @model_validator(mode="after")
    def _exactly_one_kind(self) -> Step:
        kinds = [k for k in KINDS if self.action_of(k) is not None]
        if len(kinds) != 1:
            found = f" (found {', '.join(kinds)})" if kinds else ""
            raise ValueError(f"a step has exactly one of {', '.join(KINDS)}{found}")
        return self

    def action_of(self, kind: str) -> Any:
        return getattr(self, "assert_" if kind == "assert" else kind)

    @property
    def kind(self) -> str:
        return next(k for k in KINDS if self.action_of(k) is not None)

    @property
    def action(self) -> Any:
        return self.action_of(self.kind)

    @property
    def title(self) -> str:
        """The step's name, or one made from its action ("migrate vm1 -> other")."""
        if self.name:
            return self.name
        a = self.action
        match self.kind:
            case "form_pool":
                return f"form pool {', '.join(a.members)}"
            case "create_vm":
                return f"create {a.name} on {a.host}"
            case "destroy_vm":
                return f"destroy {a}"
            case "migrate":
                return f"migrate {a.vm} -> {a.to}"
            case "evacuate":
                return f"evacuate {a.host}"
            case "fault":
                return f"fault {a.kind} {','.join(a.targets)}"
            case "heal":
                return f"heal {a}"
            case "wait":
                if a.until is not None:
                    return f"wait until {a.until.describe()}"
                return f"wait for {a.for_.describe()}" if a.for_ else f"wait {a.seconds:g}s"
            case "assert":
                return "assert " + ", ".join(c.describe() for c in a)
            case "repeat":
                return f"repeat {a.times} times"
            case "run":
                return f"run on {a.host}: {short(a.command)}"
            case _:
                return f"checkpoint {'save ' + a.save if a.save else 'restore ' + a.restore}"


Repeat.model_rebuild()


class Scenario(StrictModel):
    """A whole scenario file, validated as a unit so references between steps are checked."""

    name: Name
    description: str = ""
    lab: str | None = Field(None, description="the lab to run on: a lab name or file (e.g. xen-pool2)")
    pool: PoolSection = Field(default_factory=PoolSection)
    steps: list[Step] = Field(min_length=1)

    _source: LocatedDocument | None = PrivateAttr(None)

    @property
    def path(self) -> str:
        return self._source.path if self._source is not None else "<scenario>"

    def line_of(self, loc: Loc) -> int | None:
        return self._source.line_of(loc) if self._source is not None else None

    def walk(self) -> Iterator[tuple[Loc, Step]]:
        """Every step with its YAML path, in document order, repeat bodies included once."""
        yield from _walk(self.steps, ("steps",))

    def faults(self) -> Iterator[tuple[Loc, FaultStep]]:
        """Every fault the scenario injects, with the YAML path of its mapping: fault steps and
        faults struck during a migration (`migrate.during.fault`)."""
        for loc, step in self.walk():
            if step.fault is not None:
                yield loc + ("fault",), step.fault
            elif step.migrate is not None and step.migrate.during is not None:
                yield loc + ("migrate", "during", "fault"), step.migrate.during.fault

    def shell_uses(self) -> Iterator[tuple[Loc, str]]:
        """Every step that needs a machine's shell (`run`, `wait: until`), with the YAML path of
        its host and the host's name."""
        for loc, step in self.walk():
            if step.run is not None:
                yield loc + ("run", "host"), step.run.host
            elif step.wait is not None and step.wait.until is not None:
                yield loc + ("wait", "until", step.wait.until.kind, "host"), step.wait.until.host

    def protected_guests(self) -> tuple[str, ...]:
        """pool.protected, then guests created with `protected: true`, in order of appearance."""
        names = list(self.pool.protected)
        for _, step in self.walk():
            if step.create_vm is not None and step.create_vm.protected and step.create_vm.name not in names:
                names.append(step.create_vm.name)
        return tuple(names)

    def planned_steps(self) -> int:
        """How many steps a run executes, each repeat body multiplied by its times."""
        return _count(self.steps)

    def cross_check(self) -> list[Problem]:
        """Problems between steps, each with its YAML path (see validate_document)."""
        limits = _limit_problems(self.steps, ("steps",), 0)
        if not limits and self.planned_steps() > MAX_PLANNED_STEPS:
            limits.append((("steps",), (f"this scenario would run {self.planned_steps()} steps, more than "
                                        f"{MAX_PLANNED_STEPS} (the limit): lower a repeat's times")))
        if limits:
            return limits
        problems: list[Problem] = []
        for loc, step in self.walk():
            figures = FIGURES[step.kind]
            for figure, expectation in step.expect.items():
                where = loc + ("expect", figure)
                if figure in RENAMED_FIGURES and RENAMED_FIGURES[figure] in figures:
                    problems.append((where, (f"{figure!r} is now called {RENAMED_FIGURES[figure]!r} "
                                             f"({figure_meaning(RENAMED_FIGURES[figure])}): write that name")))
                    continue
                if figure not in figures:
                    problems.append((where, (f"a {step.kind} step does not measure {figure!r} "
                                             f"(it measures: {', '.join(figures)})")))
                    continue
                unit_problem = expectation.unit_problem(figures[figure])
                if unit_problem:
                    problems.append((where, f"{figure} {unit_problem}, not {expectation.text!r}"))
                elif any(limit.value < 0 for limit in _limits_of(expectation)):
                    problems.append((where, (f"{figure} {expectation.text!r} has a negative limit, which no "
                                             f"{_what(figures[figure])} can be: write a limit of 0 or more")))
        state = Replay(problems)
        state.run(self.steps, ("steps",))
        created = set(state.created) | state.destroyed  # ever created
        for index, name in enumerate(self.pool.protected):
            if name not in created:
                problems.append((("pool", "protected", index), f"protected guest {name!r} is never created"))
        unique: list[Problem] = []
        for problem in problems:
            if problem not in unique:
                unique.append(problem)
        return unique


def _count(steps: list[Step]) -> int:
    return sum(step.repeat.times * _count(step.repeat.steps) if step.repeat is not None else 1 for step in steps)


def _limit_problems(steps: list[Step], base: Loc, depth: int) -> list[Problem]:
    """Repeats nested deeper than MAX_REPEAT_DEPTH, each at the repeat that crosses the limit."""
    problems: list[Problem] = []
    for index, step in enumerate(steps):
        if step.repeat is None:
            continue
        loc = base + (index, "repeat")
        if depth + 1 > MAX_REPEAT_DEPTH:
            problems.append((loc, (f"repeats nest more than {MAX_REPEAT_DEPTH} deep (the limit): "
                                   "flatten the inner repeats into one")))
        else:
            problems += _limit_problems(step.repeat.steps, loc + ("steps",), depth + 1)
    return problems


def _limits_of(expectation: Any) -> list[Any]:
    """Every limit of an expectation, of each accelerator's bound for a per-accelerator one."""
    bounds = [e for _, e in expectation.bounds] if hasattr(expectation, "bounds") else [expectation]
    return [limit for bound in bounds for limit in bound.limits]


def _what(unit: str) -> str:
    return {"s": "time", "count": "count", "%": "percentage"}.get(unit, "figure")


def _walk(steps: list[Step], base: Loc) -> Iterator[tuple[Loc, Step]]:
    for index, step in enumerate(steps):
        loc = base + (index,)
        yield loc, step
        if step.repeat is not None:
            yield from _walk(step.repeat.steps, loc + ("repeat", "steps"))


# -- loading ----------------------------------------------------------------------------
def _validated(doc: LocatedDocument) -> Scenario:
    scenario: Scenario = validate_document(Scenario, doc)
    scenario._source = doc
    return scenario


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate a scenario file; raises SpecError naming file and line."""
    return _validated(load_located(path))


def parse_scenario(text: str, path: str = "<string>") -> Scenario:
    return _validated(parse_located(text, path))


def resolve_scenario_path(name_or_path: str, scenarios_dir: Path | None = None) -> Path:
    """`live-migration` or `scenarios/live-migration.yaml` -> a file path."""
    candidate = Path(name_or_path)
    if candidate.suffix in (".yaml", ".yml") or "/" in name_or_path:
        return candidate
    return (scenarios_dir or Path.cwd() / "scenarios") / f"{name_or_path}.yaml"


# -- against a lab ----------------------------------------------------------------------
def check_against_lab(scenario: Scenario, lab_spec: LabSpec) -> list[tuple[int | None, str]]:
    """Problems of running `scenario` on the lab `lab_spec` (a LabSpec), each with its line.

    Pool members, guest hosts and waited-for hosts must be Xen hosts of the lab; fault
    targets may also be the services node; networks must exist; a guest must fit in its
    host's memory beside dom0.
    """
    hosts = dict(lab_spec.hosts)
    services = lab_spec.services.name if lab_spec.services is not None else None
    networks = set(lab_spec.networks)
    listed = ", ".join(hosts)
    found: list[Problem] = []

    def host(name: str | None, loc: Loc, allow_services: bool = False) -> None:
        if name is None or name in hosts or (allow_services and name == services):
            return
        if name == services:
            found.append((loc, (f"{name!r} is the services node of lab {lab_spec.name}, not a Xen host "
                                f"(hosts: {listed})")))
        else:
            extra = f"; services node: {services}" if allow_services and services else ""
            found.append((loc, f"lab {lab_spec.name} has no host {name!r} (hosts: {listed}{extra})"))

    for loc, step in scenario.walk():
        a = step.action
        match step.kind:
            case "form_pool":
                for i, member in enumerate(a.members):
                    host(member, loc + ("form_pool", "members", i))
            case "create_vm":
                host(a.host, loc + ("create_vm", "host"))
                spec = hosts.get(a.host)
                if spec is not None and a.memory_mib > spec.memory_mib - spec.dom0_memory_mib:
                    found.append((loc + ("create_vm", "memory_mib"),
                                  (f"{a.memory_mib} MiB does not fit on {a.host}: {spec.memory_mib} MiB with "
                                   f"{spec.dom0_memory_mib} MiB for dom0")))
            case "migrate":
                if a.to != OTHER:
                    host(a.to, loc + ("migrate", "to"))
            case "evacuate":
                host(a.host, loc + ("evacuate", "host"))
            case "wait":
                if a.for_ is not None:
                    host(a.for_.host, loc + ("wait", "for"))
            case "assert":
                for i, condition in enumerate(a):
                    host(condition.host, loc + ("assert", i))
    for loc, name in scenario.shell_uses():
        host(name, loc, allow_services=True)
    for loc, fault in scenario.faults():
        for i, target in enumerate(fault.targets):
            host(target, loc + ("target",) + ((i,) if isinstance(fault.target, list) else ()), allow_services=True)
        if fault.network is not None and fault.network not in networks:
            found.append((loc + ("network",), (f"lab {lab_spec.name} has no network {fault.network!r} "
                                               f"(networks: {', '.join(networks)})")))
    return [(scenario.line_of(loc), message) for loc, message in found]
