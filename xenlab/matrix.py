"""Hardware matrices (`qualification/matrix-*.yaml`): one lab file times hardware axes.

A matrix names a base lab file and axes of `hardware:` choices (`firmware: [direct, bios,
uefi]`, `nic: [virtio, e1000]`, ...); it expands to every combination, each a validated
lab spec of its own name (`xen-pool2-bios-e1000`), so combinations run side by side. The
planner is pure: it expands, names, and groups the combinations into waves that fit in
this machine's memory at once (the admission arithmetic of `lab.resources`) and whose
vCPUs do not outnumber its cores, never two labs of one address plan in a wave. Running them is the qualify runner's job.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, field_validator, model_validator

from .errors import SpecError
from .hardware import CPU_MODEL_PATTERN, DiskBus, Firmware, Hardware, NicModel
from .lab.resources import HOST_RESERVE_MIB, needed_mib, needed_vcpus
from .plan import plan_lab
from .shards import PlanItem
from .spec import NAME_PATTERN, LabSpec, Name, check_lab_document, resolve_path
from .validation import StrictModel, validate_document
from .yamlfile import LocatedDocument, load_located, parse_located

AXES = ("firmware", "nic", "disk", "cpu")  # the `hardware:` keys a matrix varies
MAX_COMBINATIONS = 32  # each is a lab booted under TCG: more is a week's run, not a matrix
CpuModel = Annotated[str, Field(pattern=CPU_MODEL_PATTERN)]


class MatrixAxes(StrictModel):
    """The values of each axis; an axis left out keeps the base lab's choice."""

    firmware: list[Firmware] | None = None
    nic: list[NicModel] | None = None
    disk: list[DiskBus] | None = None
    cpu: list[CpuModel] | None = None

    @model_validator(mode="before")
    @classmethod
    def _known_axes(cls, data: Any) -> Any:
        if isinstance(data, dict):
            unknown = [k for k in data if k not in AXES]
            if unknown:
                raise ValueError(f"unknown axis {unknown[0]!r}: a matrix varies {', '.join(AXES)}")
            if not data:
                raise ValueError(f"the matrix has no axes: give at least one of {', '.join(AXES)} with its values")
        return data

    @field_validator("firmware", "nic", "disk", "cpu")
    @classmethod
    def _values(cls, value: list[str] | None) -> list[str] | None:
        if value is not None:
            if not value:
                raise ValueError("an axis with no values makes an empty matrix: list at least one value")
            if len(set(value)) != len(value):
                raise ValueError("a value is listed twice")
        return value


class MatrixSpec(StrictModel):
    """A matrix file: the base lab and its axes."""

    name: Name
    description: str = ""
    lab: str = Field(min_length=1, max_length=400, description="the base lab file (relative to this file)")
    prefix: Name | None = Field(None, description="combination names start with this (default: the lab's name)")
    axes: MatrixAxes
    estimate_minutes: float | None = Field(None, gt=0, le=10000, description=(
        "expected minutes per combination, for `xenlab qualify --shard` while the history has none"))


@dataclass(frozen=True)
class Combination:
    """One lab of the matrix: its name, its axis values, its validated lab spec."""

    name: str
    values: dict[str, str]
    spec: LabSpec
    needed_mib: int
    needed_vcpus: int

    @property
    def lab_number(self) -> int:
        return plan_lab(self.spec).number


@dataclass(frozen=True)
class MatrixPlan:
    """What a run of the matrix would do: its labs, and which of them fit in memory and on
    this machine's cores together."""

    matrix: str
    axes: dict[str, list[str]]
    combinations: tuple[Combination, ...]
    waves: tuple[tuple[str, ...], ...]  # labs that run at once, wave after wave
    too_big: tuple[str, ...]  # labs that do not fit even alone
    available_mib: int | None
    cores: int | None = None
    estimate_s: float | None = None  # the file's declared time per combination (estimate_minutes)

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": "xenlab.matrix/1", "matrix": self.matrix, "axes": self.axes,
            "available_mib": self.available_mib, "cores": self.cores,
            "combinations": [{"name": c.name, "hardware": c.values, "needed_mib": c.needed_mib,
                              "needed_vcpus": c.needed_vcpus}
                             for c in self.combinations],
            "waves": [list(w) for w in self.waves], "too_big": list(self.too_big),
        }


def _token(value: str) -> str:
    """An axis value as part of a lab name: `qemu64,+svm` -> `qemu64svm`."""
    return re.sub(r"[^a-z0-9-]", "", value.lower())


def combination_name(prefix: str, values: dict[str, str]) -> str:
    return "-".join([prefix, *(_token(v) for v in values.values())])


def expand(matrix: MatrixSpec, axes_order: list[str], base: LocatedDocument, matrix_doc: LocatedDocument,
           ) -> list[Combination]:
    """Every combination as a validated lab spec; problems name the matrix file's lines."""
    axes = {a: list(getattr(matrix.axes, a)) for a in axes_order if getattr(matrix.axes, a) is not None}
    total = 1
    for values in axes.values():
        total *= len(values)
    if total > MAX_COMBINATIONS:
        sizes = " x ".join(f"{len(v)} {a}" for a, v in axes.items())
        raise SpecError(matrix_doc.path, [(matrix_doc.line_of(("axes",)), (
            f"axes: {sizes} make {total} combinations, more than {MAX_COMBINATIONS} (each boots a lab under "
            "TCG): split the matrix into several files"))])
    base_data = base.data if isinstance(base.data, dict) else {}
    problems: list[tuple[int | None, str]] = []
    for host, body in (base_data.get("hosts") or {}).items():
        own = (body or {}).get("hardware") if isinstance(body, dict) else None
        for axis in axes:
            if isinstance(own, dict) and axis in own:
                problems.append((matrix_doc.line_of(("axes", axis)), (
                    f"axes.{axis}: host {host} of {base.path} sets its own hardware.{axis}, which this axis would "
                    "not reach: remove it there, or vary another axis")))
    if problems:
        raise SpecError(matrix_doc.path, problems)
    prefix = matrix.prefix or str(base_data.get("name", matrix.name))
    combinations: list[Combination] = []
    for chosen in itertools.product(*axes.values()):
        values = dict(zip(axes, chosen, strict=True))
        name = combination_name(prefix, values)
        if not re.fullmatch(NAME_PATTERN, name):
            raise SpecError(matrix_doc.path, [(matrix_doc.line_of(("prefix",) if matrix.prefix else ("axes",)), (
                f"combination name {name!r} is not a valid lab name (at most 24 lowercase letters, digits and '-'): "
                "give the matrix a shorter `prefix:`"))])
        data = dict(base_data)
        data["name"] = name
        data["hardware"] = {**(base_data.get("hardware") or {}), **values}
        try:
            spec = check_lab_document(LocatedDocument(base.path, data, base.lines))
        except SpecError as exc:
            raise SpecError(matrix_doc.path, [(matrix_doc.line_of(("axes",)), (f"combination {name}: {base.path}:"
                                               f"{line or '-'}: {message}")) for line, message in exc.problems]) from None
        plan = plan_lab(spec)
        combinations.append(Combination(name, values, spec, needed_mib(plan), needed_vcpus(plan)))
    return combinations


def waves(combinations: list[Combination], available_mib: int | None, cores: int | None = None,
          ) -> tuple[list[list[str]], list[str]]:
    """Group labs into waves that fit in `available_mib` together (first fit, in matrix
    order), keeping the host's reserve, and whose vCPUs together do not outnumber `cores`
    (a lab alone always may); labs of one address plan never share a wave. Unknown memory:
    one lab a wave. Returns the waves and the labs too big to run at all.

    Why the cores: on a 2-core TCG machine (2026-12-04) four xen-pool2 labs at once (12
    vCPUs) took 38 min for one quick qualification each, their migrations 405-433 s with
    68-78 s of downtime and dom0 hotplug scripts timing out, where one lab alone passed in
    6.9 min with 7.3 s of downtime: overcommitted labs measure the machine, not Xen."""
    if available_mib is None:
        return [[c.name] for c in combinations], []
    budget = available_mib - HOST_RESERVE_MIB
    too_big = [c.name for c in combinations if c.needed_mib > budget]
    groups: list[list[Combination]] = []
    for combo in (c for c in combinations if c.name not in too_big):
        for members in groups:
            if (sum(m.needed_mib for m in members) + combo.needed_mib <= budget
                    and (cores is None or sum(m.needed_vcpus for m in members) + combo.needed_vcpus <= cores)
                    and all(m.lab_number != combo.lab_number for m in members)):
                members.append(combo)
                break
        else:
            groups.append([combo])
    return [[c.name for c in members] for members in groups], too_big


def _plan(doc: LocatedDocument, available_mib: int | None, cores: int | None = None) -> MatrixPlan:
    matrix: MatrixSpec = validate_document(MatrixSpec, doc)
    base_path = resolve_path(matrix.lab, Path(doc.path).resolve().parent)
    if not base_path.is_file():
        raise SpecError(doc.path, [(doc.line_of(("lab",)), (f"lab: {matrix.lab} does not exist (relative paths are "
                                    f"read from {Path(doc.path).resolve().parent})"))])
    base = load_located(base_path)
    order = [a for a in (doc.data.get("axes") or {}) if a in AXES]
    combos = expand(matrix, order, base, doc)
    grouped, too_big = waves(combos, available_mib, cores)
    estimate = matrix.estimate_minutes * 60 if matrix.estimate_minutes is not None else None
    return MatrixPlan(matrix.name, {a: list(getattr(matrix.axes, a)) for a in order}, tuple(combos),
                      tuple(tuple(w) for w in grouped), tuple(too_big), available_mib, cores, estimate)


DEFAULT_COMBINATION_S = 600.0  # a combination's qualification when neither history nor the file says


def plan_items(plan: MatrixPlan, seen: Callable[[str], float | None]) -> list[PlanItem]:
    """The matrix's combinations as shard plan items, each its own group (a lab of its own):
    `seen(name)` is its earlier runs' time (history), else the file's estimate, else a default."""
    items = []
    for combination in plan.combinations:
        earlier = seen(combination.name)
        if earlier is not None:
            items.append(PlanItem(combination.name, combination.name, earlier, "history"))
        elif plan.estimate_s is not None:
            items.append(PlanItem(combination.name, combination.name, plan.estimate_s, "declared"))
        else:
            items.append(PlanItem(combination.name, combination.name, DEFAULT_COMBINATION_S, "default"))
    return items


def restrict(plan: MatrixPlan, names: list[str]) -> MatrixPlan:
    """The plan of only these combinations (a shard's), in waves for this machine again."""
    chosen = [c for c in plan.combinations if c.name in set(names)]
    grouped, too_big = waves(chosen, plan.available_mib, plan.cores)
    return replace(plan, combinations=tuple(chosen), waves=tuple(tuple(w) for w in grouped), too_big=tuple(too_big))


def load_matrix(path: str | Path, available_mib: int | None = None, cores: int | None = None) -> MatrixPlan:
    """Read, validate and plan a matrix file for this much memory and these many cores
    (None: not limited by them); raises SpecError naming file and line."""
    return _plan(load_located(path), available_mib, cores)


def parse_matrix(text: str, path: str, available_mib: int | None = None, cores: int | None = None) -> MatrixPlan:
    return _plan(parse_located(text, path), available_mib, cores)


def hardware_of(combination: Combination) -> dict[str, Hardware]:
    """Each host's resolved hardware in one combination (for reports)."""
    return {name: combination.spec.hardware_of(name) for name in combination.spec.hosts}
