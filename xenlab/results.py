"""The one results model every report reads: schema-versioned JSON.

A run (a `xenlab run`, or a pytest session) holds scenarios; a scenario holds timed
steps; a step holds measured figures and the expectations checked against them.
Figures keep their unit so reports never guess. Version rule: fields are only added
within a schema version; renaming or removing one bumps it.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from . import __version__

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
    substeps: list["StepResult"] = Field(default_factory=list)  # for repeat

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
    def read(cls, path: Path) -> "RunResults":
        data = json.loads(Path(path).read_text())
        schema = data.get("schema", "")
        if schema != SCHEMA:
            from .errors import XenlabError

            raise XenlabError(f"{path}: results schema {schema!r} is not {SCHEMA!r}")
        return cls.model_validate(data)
