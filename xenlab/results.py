"""The one results model every report reads: schema-versioned JSON.

A run (a `xenlab run`, or a pytest session) holds scenarios; a scenario holds timed
steps; a step holds measured figures and the expectations checked against them.
Figures keep their unit so reports never guess, and each has a one-line meaning here
(`FIGURE_MEANINGS`), which every report prints beside it. Version rule: fields are only
added within a schema version; renaming or removing one bumps it. Older versions stay
readable: `load_results` upgrades them (see `READABLE_SCHEMAS`).
"""

from __future__ import annotations

import json
import math
import re
import time
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from . import __version__
from .errors import SpecError
from .yamlfile import decode_utf8

SCHEMA = "xenlab.results/2"
# /1 -> /2: the figure heartbeats_missed is called heartbeat_slots_empty; steps gained `timelines`
READABLE_SCHEMAS = ("xenlab.results/1", SCHEMA)
RENAMED_FIGURES = {"heartbeats_missed": "heartbeat_slots_empty"}  # old name -> new name
# not_measured: everything that was measured or checked passed, but something the scenario asked
# for could not be measured or judged on this lab (never counted as passed; exit status 4).
Outcome = Literal["passed", "failed", "error", "skipped", "not_measured"]
Verdict = Literal["passed", "failed", "not_measured"]
# From worst to best: how the outcomes of steps (or scenarios, or shards) combine into one.
OUTCOME_ORDER: tuple[Outcome, ...] = ("error", "failed", "not_measured", "skipped", "passed")
LATEST_TIME = 253402300799.0  # 9999-12-31: later timestamps cannot be shown as dates
MAX_TIMELINE_BUCKETS = 1200  # two minutes at 100 ms per bucket; longer timelines get wider buckets
MAX_TIMELINE_MARKS = 32


class ResultModel(BaseModel):
    model_config = ConfigDict(extra="forbid")


def combined_outcome(outcomes: list[Outcome] | tuple[Outcome, ...], empty: Outcome = "passed") -> Outcome:
    """The one outcome of many: the worst of them (error, failed, not_measured, skipped, passed).

    A run whose parts were all skipped is skipped; one part not measured makes the whole not
    measured, never passed."""
    if not outcomes:
        return empty
    return min(outcomes, key=OUTCOME_ORDER.index)


class Figure(ResultModel):
    """One measured value, e.g. downtime 0.84 s."""

    value: float | None  # None: could not be measured (the reason is in `note`)
    unit: str  # "s", "ms", "count", "%", "bytes", "bool"
    note: str = ""
    measurable: bool = True  # False: this backend cannot measure it (the note says why); not a failure


class ExpectationResult(ResultModel):
    figure: str  # which figure of the step was checked, e.g. "downtime"
    expected: str  # as written in the scenario, e.g. "< 2s"
    measured: Figure
    passed: bool  # True only for verdict "passed"
    message: str = ""  # "downtime 2.40 s is not < 2 s"
    # passed | failed | not_measured (the figure could not be measured or judged on this lab);
    # None in files written before the field existed: read as passed/failed from `passed`.
    verdict: Verdict | None = None

    @model_validator(mode="after")
    def _verdict_agrees(self) -> ExpectationResult:
        if self.verdict is None:
            self.verdict = "passed" if self.passed else "failed"
        elif self.passed != (self.verdict == "passed"):
            raise ValueError(f"passed={self.passed} contradicts verdict {self.verdict!r}")
        return self


Timestamp = Annotated[float, Field(ge=0, le=LATEST_TIME)]  # time.time()


class EventMark(ResultModel):
    """A moment of an event drawn on its heartbeat timeline, e.g. "migration start"."""

    at: Timestamp
    label: str = Field(max_length=200)


class HeartbeatTimeline(ResultModel):
    """One guest's heartbeats around one event (a migration, a fault), compact but exact where it counts.

    Heartbeats come every 10 ms, so they are stored as counts per bucket (`bucket_s`, 0.1 s
    unless the window is long) from `start`; the silence keeps its exact ends: the last
    heartbeat before it and the first after it, as the step's figures measured them.
    """

    guest: str = Field(max_length=200)
    event: str = Field(max_length=300)  # the same text for every guest of one event: "evacuate h1"
    start: Timestamp
    bucket_s: float = Field(gt=0, le=3600)
    counts: list[Annotated[int, Field(ge=0)]] = Field(max_length=MAX_TIMELINE_BUCKETS)  # heartbeats received in each bucket
    silence_start: float | None = Field(None, ge=0, le=LATEST_TIME)  # last heartbeat before the silence
    silence_end: float | None = Field(None, ge=0, le=LATEST_TIME)  # first heartbeat after it (None: not yet)
    restarted: bool = False  # the guest's heartbeat counter restarted across the silence (it rebooted)
    note: str = ""  # why the silence is not measured, when it is not
    marks: list[EventMark] = Field(default_factory=list, max_length=MAX_TIMELINE_MARKS)

    @property
    def end(self) -> float:
        return self.start + len(self.counts) * self.bucket_s

    @property
    def silence_s(self) -> float | None:
        if self.silence_start is None or self.silence_end is None:
            return None
        return self.silence_end - self.silence_start


class StepResult(ResultModel):
    index: int
    name: str  # from the scenario, or generated ("migrate vm1 -> h2")
    kind: str  # form_pool, create_vm, migrate, evacuate, fault, heal, wait, assert, repeat, checkpoint
    started_at: float  # time.time()
    ended_at: float
    outcome: Outcome
    figures: dict[str, Figure] = Field(default_factory=dict)
    expectations: list[ExpectationResult] = Field(default_factory=list)
    message: str = ""
    details: dict = Field(default_factory=dict)  # step-specific data (e.g. a migration record)
    substeps: list[StepResult] = Field(default_factory=list)  # for repeat
    timelines: list[HeartbeatTimeline] = Field(default_factory=list)  # each affected guest, per event

    @property
    def seconds(self) -> float:
        return self.ended_at - self.started_at


class ScenarioResult(ResultModel):
    name: str
    file: str
    lab: str
    toolstack: str
    started_at: float
    ended_at: float
    outcome: Outcome
    steps: list[StepResult] = Field(default_factory=list)
    summary: dict[str, Figure] = Field(default_factory=dict)  # e.g. downtime_p50, downtime_max
    series: dict[str, list[float]] = Field(default_factory=dict)  # e.g. all downtimes, for plots
    # A sharded run (xenlab/shards.py): the machine and the shard ("2/3") this scenario ran on.
    machine: str = Field("", max_length=128)
    shard: str = Field("", max_length=16)

    def figure_names(self) -> list[str]:
        """Every figure name in the scenario (its steps, their substeps, its summary), once, in order."""
        names: list[str] = []

        def walk(steps: list[StepResult]) -> None:
            for step in steps:
                names.extend(step.figures)
                walk(step.substeps)

        walk(self.steps)
        return list(dict.fromkeys(names + list(self.summary)))


class HostInventory(ResultModel):
    """What a hardware-qualification report lists per host."""

    name: str
    cpu_model: str = ""
    cpu_flags: list[str] = Field(default_factory=list)
    cpus: int | None = None
    memory_mib: int | None = None
    nics: list[str] = Field(default_factory=list)
    disks: list[str] = Field(default_factory=list)
    firmware: str = ""
    xen_version: str = ""
    dom0_kernel: str = ""
    accel: str = ""
    nested: bool | None = None
    virt_caps: list[str] = Field(default_factory=list)  # `xl info` virt_caps: pv, hvm, hap or shadow, ...
    cpu_microcode: str = ""  # /proc/cpuinfo microcode revision (empty where the CPU reports none)
    nic_details: list[str] = Field(default_factory=list)  # per NIC: driver, version, firmware, bus, link (ethtool -i)
    xen_caps: str = ""  # `xl info` xen_caps: the guest ABIs Xen offers
    xen_commandline: str = ""  # `xl info` xen_commandline
    iommu: str = ""  # enabled / disabled, from `xl dmesg` and virt_caps (*_directio)
    # The virtual hardware xenlab gave a QEMU host (nic, disk, firmware, cpu: xenlab/hardware.py);
    # empty for a real host, whose hardware is what the fields above report.
    hardware: dict[str, str | None] = Field(default_factory=dict)
    # What Xen the host runs and where it came from (a lab file's `xen:`, see docs/your-own-xen.md).
    xen_changeset: str = ""  # `xl info` xen_changeset
    dom0_mode: str = ""  # PV or PVH (/sys/hypervisor/guest_type in dom0)
    xen_origin: str = ""  # the image's Debian Xen, or the user's file
    dom0_kernel_origin: str = ""
    user_files: list[dict[str, str]] = Field(default_factory=list)  # role and sha256 of each user file it boots


class ShardRecord(ResultModel):
    """One shard of a sharded run, as it wrote itself down or as `xenlab report merge` found it."""

    shard: str = Field(max_length=16)  # "2/3"
    machine: str = Field("", max_length=128)
    status: Literal["reported", "missing", "failed"] = "reported"  # failed: it broke off or lost items
    reason: str = ""
    items: int = 0  # the items the shard's plan gave it


class RunResults(ResultModel):
    schema_: str = Field(SCHEMA, alias="schema")
    xenlab_version: str = __version__
    created_at: float = Field(default_factory=time.time)
    lab: str = ""
    accel: str = ""
    scenarios: list[ScenarioResult] = Field(default_factory=list)
    inventory: list[HostInventory] = Field(default_factory=list)
    bringup: dict[str, dict[str, float]] = Field(default_factory=dict)  # host -> stage -> seconds
    # the lab file's choices that change what an xl pool runs (hotplug scripts, migration transport)
    lab_choices: dict[str, str] = Field(default_factory=dict, max_length=16)
    # A sharded run: the id its shards share, and its shards (a shard's own results: itself;
    # merged results: every shard, those missing or broken off too). Several labs merged:
    # `bringup` and `inventory` name hosts LAB/HOST.
    run_id: str = Field("", max_length=128)
    shards: list[ShardRecord] = Field(default_factory=list)

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    def write(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.model_dump_json(by_alias=True, indent=2))
        return path

    @classmethod
    def read(cls, path: Path | str) -> RunResults:
        """A results file, validated (see `load_results`)."""
        return load_results(path)


# -- loading a results file (a user file like any other: refused with file, line and fix) --
MAX_RESULTS_BYTES = 64 * 1024 * 1024
MAX_JSON_DEPTH = 64
MAX_NUMBER_CHARS = 40


class _Refused(ValueError):
    pass


def _finite(text: str) -> float:
    if len(text) > MAX_NUMBER_CHARS:
        raise _Refused(f"a number of {len(text)} characters is too long (the limit is {MAX_NUMBER_CHARS})")
    value = float(text)
    if not math.isfinite(value):
        raise _Refused(f"{text} is out of range for a number")
    return value


def _whole(text: str) -> int:
    if len(text) > MAX_NUMBER_CHARS:
        raise _Refused(f"a number of {len(text)} digits is too long (the limit is {MAX_NUMBER_CHARS})")
    return int(text)


def _no_constant(name: str) -> Any:
    raise _Refused(f"{name} is not a number JSON allows: a figure that was not measured is null")


def _json_depth_problem(text: str) -> tuple[int, str] | None:
    """The line where brackets nest deeper than MAX_JSON_DEPTH (json.loads would recurse), if any."""
    depth, line, in_string, escaped = 0, 1, False, False
    for char in text:
        if char == "\n":
            line += 1
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            if depth > MAX_JSON_DEPTH:
                return line, f"nested more than {MAX_JSON_DEPTH} levels deep (the limit)"
        elif char in "]}":
            depth -= 1
    return None


def _times_problems(results: RunResults) -> list[str]:
    """Timestamps a report cannot show: out of range, or a scenario or step that ends before it starts."""
    found: list[str] = []

    def check(where: str, started: float, ended: float) -> None:
        for name, value in (("started_at", started), ("ended_at", ended)):
            if not 0 <= value <= LATEST_TIME:
                found.append(f"{where}.{name}: {value:g} is not a time (seconds since 1970, before year 10000)")
        if ended < started:
            found.append(f"{where}: ended_at {ended:.3f} is before started_at {started:.3f}")

    def steps(where: str, items: list[StepResult]) -> None:
        for i, step in enumerate(items):
            check(f"{where}.steps.{i}", step.started_at, step.ended_at)
            steps(f"{where}.steps.{i}.substeps", step.substeps)

    if not 0 <= results.created_at <= LATEST_TIME:
        found.append(f"created_at: {results.created_at:g} is not a time (seconds since 1970, before year 10000)")
    for i, scenario in enumerate(results.scenarios):
        check(f"scenarios.{i}", scenario.started_at, scenario.ended_at)
        steps(f"scenarios.{i}", scenario.steps)
    return [f.replace(".substeps.steps.", ".substeps.") for f in found]


def load_results(path: Path | str) -> RunResults:
    """Read a results JSON; anything that is not a valid xenlab results file is a SpecError."""
    where = str(path)
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_RESULTS_BYTES + 1)
    except FileNotFoundError:
        raise SpecError(where, [(None, "no such results file")]) from None
    except IsADirectoryError:
        raise SpecError(where, [(None, "is a directory, not a results file")]) from None
    except OSError as exc:
        raise SpecError(where, [(None, f"cannot read: {exc.strerror or exc}")]) from None
    if len(raw) > MAX_RESULTS_BYTES:
        raise SpecError(where, [(None, f"larger than {MAX_RESULTS_BYTES // 2**20} MiB (the limit for a results file)")])
    text = decode_utf8(raw, where)
    deep = _json_depth_problem(text)
    if deep:
        raise SpecError(where, [deep])
    try:
        data = json.loads(text, parse_float=_finite, parse_int=_whole, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        raise SpecError(where, [(exc.lineno, f"not JSON: {exc.msg} (column {exc.colno})")]) from None
    except _Refused as exc:
        raise SpecError(where, [(None, f"not a xenlab results file: {exc}")]) from None
    if not isinstance(data, dict):
        kind = {list: "a list", str: "a string", type(None): "null", bool: "a boolean"}.get(type(data), "a number")
        first = text.count("\n", 0, len(text) - len(text.lstrip())) + 1
        raise SpecError(where, [(first, (f"the top level is {kind}: a results file is a JSON object with "
                                    f'"schema": "{SCHEMA}" (written by `xenlab run` or pytest --xenlab-report)'))])
    schema = data.get("schema", "")
    if schema not in READABLE_SCHEMAS:
        raise SpecError(where, [(None, (f"results schema {schema!r} is not {SCHEMA!r}: is it a xenlab results file "
                                        "(written by `xenlab run` or pytest --xenlab-report)?"))])
    if schema != SCHEMA:
        data = _upgraded(data)
    try:
        results = RunResults.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        shown = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in errors[:3])
        more = f" (and {len(errors) - 3} more)" if len(errors) > 3 else ""
        raise SpecError(where, [(None, f"not a xenlab results file ({shown}){more}")]) from None
    bad_times = _times_problems(results)
    if bad_times:
        raise SpecError(where, [(None, f"not a valid results file: {problem}") for problem in bad_times[:5]])
    return results


def _upgraded(data: dict) -> dict:
    """A results/1 document as results/2: renamed figures get their new names."""

    def step(raw: Any) -> None:
        if not isinstance(raw, dict):
            return  # validation says what is wrong
        figures = raw.get("figures")
        if isinstance(figures, dict):
            raw["figures"] = {RENAMED_FIGURES.get(k, k): v for k, v in figures.items()}
        for expectation in raw.get("expectations") or []:
            if isinstance(expectation, dict) and expectation.get("figure") in RENAMED_FIGURES:
                expectation["figure"] = RENAMED_FIGURES[expectation["figure"]]
        for sub in raw.get("substeps") or []:
            step(sub)

    for scenario in data.get("scenarios") or []:
        if isinstance(scenario, dict):
            for raw in scenario.get("steps") or []:
                step(raw)
    return {**data, "schema": SCHEMA}


# -- what each figure means (every report prints this beside the number) -------------------
FIGURE_MEANINGS: dict[str, str] = {
    "duration": "how long the step took (for a migration: the toolstack's migrate call)",
    "downtime": ("the guest's longest heartbeat silence overlapping the migration call: from its last heartbeat "
                 "before to its first after"),
    "heartbeats_lost": ("heartbeats the guest sent that never arrived (numbers skipped in its sequence) while the "
                        "migration ran; a paused guest sends none, so its silence is not counted here"),
    "heartbeat_slots_empty": ("10 ms heartbeat slots in which no heartbeat arrived, over the whole migration call: "
                              "the silence while the guest was paused, late beats of a slowed guest, and lost ones"),
    "members": "hosts in the pool once it was formed",
    "refused": "hosts refused from the pool, as the scenario expected",
    "first_heartbeat": "seconds from the start of the guest's creation to its first heartbeat",
    "integrity": "1 if every disk record the guest wrote read back intact, 0 if one was damaged or missing",
    "records": "disk records the guest wrote that read back intact",
    "completed": "1 if the migration completed despite the fault, 0 if it failed",
    "fault_at": "seconds from the start of the migration to the fault striking",
    "migrations": "guest migrations done (in the step, or over the run)",
    "migration_duration": "how long a migration call took",
    "iterations": "rounds of the repeat that ran to their end",
    "detection": "seconds from the fault to the pool declaring the host dead",
    "fencing": "seconds from the fault to the cluster stack's fencing of the lost host succeeding (its own log)",
    "restart": "seconds from the fault to the cluster stack's start of the guest's resource on a survivor (its log)",
    "recovery": "seconds from the fault to the guest's first heartbeat after the silence the fault caused",
    "since_fault": "seconds from the fault to the awaited condition holding",
}
_STATISTICS = {"p50": "median", "p90": "90th percentile", "p95": "95th percentile", "p99": "99th percentile",
               "max": "largest", "min": "smallest", "mean": "mean"}


STEP_NUMBERS = re.compile(r"^(?:\d+\.)+")  # JUnit property names start with the step (and substep) numbers


def figure_meaning(name: str) -> str:
    """One line saying what a figure counts; '' for a name this table does not know (a user's own metric).

    Knows the statistics of a figure (`downtime_p50`), JUnit's step-numbered names
    (`3.downtime`, a repeat's `3.2.downtime`) and renamed figures of older results files (`heartbeats_missed`).
    """
    base = STEP_NUMBERS.sub("", name)
    if base in RENAMED_FIGURES:
        new = RENAMED_FIGURES[base]
        return f"the old name of {new}: {FIGURE_MEANINGS[new]}"
    if base in FIGURE_MEANINGS:
        return FIGURE_MEANINGS[base]
    stem, _, statistic = base.rpartition("_")
    if statistic in _STATISTICS and stem in FIGURE_MEANINGS:
        return f"{_STATISTICS[statistic]} of {stem} over the step's rounds (a repeat) or the whole run"
    return ""


def figure_meanings(names: list[str]) -> list[tuple[str, str]]:
    """(name, meaning) for each name xenlab describes, with the figure behind a statistic
    (`downtime` for `downtime_p50`) listed after it once: the lines a report prints."""
    listed: dict[str, str] = {}
    for name in names:
        meaning = figure_meaning(name)
        if not meaning:
            continue
        listed.setdefault(name, meaning)
        stem, _, statistic = name.rpartition("_")
        if statistic in _STATISTICS and stem in FIGURE_MEANINGS:
            listed.setdefault(stem, FIGURE_MEANINGS[stem])
    return list(listed.items())
