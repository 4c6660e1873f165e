"""The one results model every report reads: schema-versioned JSON.

A run (a `xenlab run`, or a pytest session) holds scenarios; a scenario holds timed
steps; a step holds measured figures and the expectations checked against them.
Figures keep their unit so reports never guess. Version rule: fields are only added
within a schema version; renaming or removing one bumps it.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from . import __version__
from .errors import SpecError
from .yamlfile import decode_utf8

SCHEMA = "xenlab.results/1"
Outcome = Literal["passed", "failed", "error", "skipped"]


class ResultModel(BaseModel):
    model_config = ConfigDict(extra="forbid")


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
    passed: bool
    message: str = ""  # "downtime 2.40 s is not < 2 s"


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
    # The virtual hardware xenlab gave a QEMU host (nic, disk, firmware, cpu: xenlab/hardware.py);
    # empty for a real host, whose hardware is what the fields above report.
    hardware: dict[str, str | None] = Field(default_factory=dict)


class RunResults(ResultModel):
    schema_: str = Field(SCHEMA, alias="schema")
    xenlab_version: str = __version__
    created_at: float = Field(default_factory=time.time)
    lab: str = ""
    accel: str = ""
    scenarios: list[ScenarioResult] = Field(default_factory=list)
    inventory: list[HostInventory] = Field(default_factory=list)
    bringup: dict[str, dict[str, float]] = Field(default_factory=dict)  # host -> stage -> seconds

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
LATEST_TIME = 253402300799.0  # 9999-12-31: later timestamps cannot be shown as dates


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
    if schema != SCHEMA:
        raise SpecError(where, [(None, (f"results schema {schema!r} is not {SCHEMA!r}: is it a xenlab results file "
                                        "(written by `xenlab run` or pytest --xenlab-report)?"))])
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
