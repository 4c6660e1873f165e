"""Hardware qualification: a profile of checks (`qualification/*.yaml`) judged on a run.

A profile holds host checks (judged on each host's inventory) and metric thresholds
(judged on the scenarios' summary figures, or on bring-up stage times for names
`bringup_<stage>`). Every check passes or fails; a figure that was not measured fails,
since qualifying on missing evidence is not qualifying. Profiles are validated like lab
files: unknown keys and malformed thresholds are refused with file and line.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, PrivateAttr

from ..errors import SpecError
from ..results import HostInventory, RunResults
from ..validation import StrictModel, validate_document
from ..yamlfile import LocatedDocument, load_located, parse_located
from .suite_profile import SuiteSpec
from .units import Threshold, VersionRequirement, format_value, unit_family

# The summary figures xenlab's scenario runner measures (xenlab.scenario.runner), with their
# units, and the bring-up stages of a host; a profile may also name any figure of the run it
# judges (pytest's `metrics` fixture records its own).
_DISTRIBUTION = ("min", "p50", "p90", "p99", "max", "mean")
KNOWN_METRICS: dict[str, str] = {
    "migrations": "count", "heartbeats_lost": "count", "recovery_max": "s",
    **{f"migration_duration_{k}": "s" for k in _DISTRIBUTION}, **{f"downtime_{k}": "s" for k in _DISTRIBUTION},
}
BRINGUP_STAGES = ("boot", "ssh", "toolstack")
KNOWN_METRICS.update({f"bringup_{stage}": "s" for stage in BRINGUP_STAGES})


def _threshold(text: Any) -> str:
    Threshold.parse(str(text))
    return str(text)


def _version_requirement(text: Any) -> str:
    VersionRequirement.parse(str(text))
    return str(text)


ThresholdText = Annotated[str, AfterValidator(_threshold)]
VersionText = Annotated[str, AfterValidator(_version_requirement)]


# What a lab's hosts run on, as their inventory reports it: QEMU's KVM or TCG, real hosts
# (a static lab), the XAPI simulator. A profile asking for anything else is refused.
Accelerator = Literal["kvm", "tcg", "static", "sim"]


class HostChecks(StrictModel):
    """Judged on every host's inventory; a check left out is not judged."""

    min_memory_mib: int | None = Field(None, ge=1)
    min_cpus: int | None = Field(None, ge=1)
    required_cpu_flags: list[str] = Field(default_factory=list)
    xen_version: VersionText | None = None
    dom0_kernel: VersionText | None = None
    min_nics: int | None = Field(None, ge=0)
    min_disks: int | None = Field(None, ge=0)
    bare_metal_only: bool = False
    accel: list[Accelerator] | None = Field(None, description="accelerators allowed, e.g. [kvm]")


class QualificationProfile(StrictModel):
    name: str
    description: str = ""
    hosts: HostChecks = Field(default_factory=HostChecks)
    metrics: dict[str, ThresholdText] = Field(
        default_factory=dict, description="summary figure (or bringup_<stage>) -> threshold, e.g. '< 5s'")
    scenarios_passed: bool = Field(True, description="every scenario of the run must have passed (or been skipped)")
    suite: SuiteSpec | None = Field(None, description="the checks `xenlab qualify` runs on a lab (left out: "
                                                      "`xenlab qualify` runs the default suite)")

    _source: LocatedDocument | None = PrivateAttr(None)

    @property
    def path(self) -> str:
        return self._source.path if self._source is not None else "<profile>"

    def cross_check(self) -> list[tuple[tuple[Any, ...], str]]:
        """Thresholds whose unit does not fit what the metric is measured in (known metrics)."""
        found = [(("metrics", name), problem) for name, text in self.metrics.items()
                 if (problem := _unit_problem(name, Threshold.parse(text), KNOWN_METRICS.get(name)))]
        return found + (self.suite.cross_check() if self.suite is not None else [])

    def problems_with(self, results: RunResults) -> list[tuple[int | None, str]]:
        """Metrics neither xenlab nor this run measures, or whose unit does not fit the run's figure."""
        measured: dict[str, str] = dict(KNOWN_METRICS)
        for scenario in results.scenarios:
            for name, figure in scenario.summary.items():
                measured.setdefault(name, figure.unit)
        found: list[tuple[int | None, str]] = []
        line = self._source.line_of if self._source is not None else (lambda loc: None)
        for name, text in self.metrics.items():
            if name not in measured:
                close = difflib.get_close_matches(name, list(measured), n=3)
                hint = f"; did you mean {' or '.join(close)}?" if close else f" (known: {', '.join(KNOWN_METRICS)})"
                found.append((line(("metrics", name)), (f"metrics: {name!r} is not a figure xenlab or this run "
                                                        f"measures{hint}")))
            elif problem := _unit_problem(name, Threshold.parse(text), measured[name]):
                found.append((line(("metrics", name)), problem))
        return found


def _unit_problem(name: str, threshold: Threshold, unit: str | None) -> str:
    """Why `threshold` cannot judge `name` measured in `unit` ("" when it can, or when unknown)."""
    if unit is None or not threshold.unit:
        return ""
    wanted, given = unit_family(unit), unit_family(threshold.unit)
    if wanted is None or given is None or wanted[0] == given[0]:
        return ""
    example = {"time": "'< 5s'", "count": "'<= 3'", "size": "'>= 1 GiB'", "percent": "'> 99%'"}.get(wanted[0], "")
    return (f"metrics.{name}: {threshold.text!r} is in {threshold.unit}, but {name} is measured in {unit}"
            + (f": write a threshold such as {example}" if example else ""))


class CheckResult(BaseModel):
    model_config = ConfigDict(extra="forbid")

    subject: str  # a host name, a scenario name, or "run"
    check: str  # the profile key, e.g. min_memory_mib
    expected: str
    measured: str
    passed: bool
    message: str = ""


class QualificationReport(BaseModel):
    model_config = ConfigDict(extra="forbid")

    profile: str
    profile_description: str = ""
    lab: str
    accel: str
    created_at: float
    hosts: list[HostInventory]
    checks: list[CheckResult]

    @property
    def passed(self) -> bool:
        return bool(self.checks) and all(c.passed for c in self.checks)

    @property
    def failures(self) -> list[CheckResult]:
        return [c for c in self.checks if not c.passed]

    @property
    def verdict(self) -> str:
        """One line a person can act on."""
        where = f"profile {self.profile}, lab {self.lab or '?'}, {len(self.hosts)} host(s)"
        if not self.checks:
            return f"FAIL: no checks could be judged ({where})"
        if self.passed:
            return f"PASS: {len(self.checks)}/{len(self.checks)} checks passed ({where})"
        failed = self.failures
        names = ", ".join(f"{c.subject} {c.check}" for c in failed[:4]) + (", ..." if len(failed) > 4 else "")
        return f"FAIL: {len(failed)} of {len(self.checks)} checks failed: {names} ({where})"


def _validated(doc: LocatedDocument) -> QualificationProfile:
    profile: QualificationProfile = validate_document(QualificationProfile, doc)
    profile._source = doc
    return profile


def load_profile(path: str | Path) -> QualificationProfile:
    """Read and validate a profile; SpecError names the file and line of every problem."""
    return _validated(load_located(path))


def parse_profile(text: str, path: str = "<string>") -> QualificationProfile:
    return _validated(parse_located(text, path))


def check_profile(profile: QualificationProfile, results: RunResults) -> None:
    """Refuse (SpecError, with the profile's lines) a profile that cannot judge these results."""
    found = profile.problems_with(results)
    if found:
        raise SpecError(profile.path, found)


def host_checks(inv: HostInventory, checks: HostChecks) -> list[CheckResult]:
    out: list[CheckResult] = []

    def add(check: str, expected: str, measured: str, passed: bool, message: str = "") -> None:
        out.append(CheckResult(subject=inv.name, check=check, expected=expected, measured=measured,
                               passed=passed, message=message))

    def at_least(check: str, minimum: int | None, value: int | None, unit: str = "") -> None:
        if minimum is None:
            return
        expected = f">= {format_value(minimum, unit)}"
        if value is None:
            add(check, expected, "not measured", False, "the inventory has no value for it")
        else:
            add(check, expected, format_value(value, unit), value >= minimum)

    at_least("min_memory_mib", checks.min_memory_mib, inv.memory_mib, "MiB")
    at_least("min_cpus", checks.min_cpus, inv.cpus)
    if checks.required_cpu_flags:
        expected = " ".join(checks.required_cpu_flags)
        if not inv.cpu_flags:
            add("required_cpu_flags", expected, "not measured", False, "no CPU flags in the inventory")
        else:
            missing = [f for f in checks.required_cpu_flags if f not in inv.cpu_flags]
            add("required_cpu_flags", expected, "missing: " + " ".join(missing) if missing else "all present",
                not missing)
    for check, requirement, version in (("xen_version", checks.xen_version, inv.xen_version),
                                        ("dom0_kernel", checks.dom0_kernel, inv.dom0_kernel)):
        if requirement is None:
            continue
        if not version:
            add(check, requirement, "not measured", False)
            continue
        try:
            add(check, requirement, version, VersionRequirement.parse(requirement).check(version))
        except ValueError as exc:
            add(check, requirement, version, False, str(exc))
    # An empty list means the command failed: every host has a NIC and a disk to boot from.
    at_least("min_nics", checks.min_nics, len(inv.nics) or None)
    at_least("min_disks", checks.min_disks, len(inv.disks) or None)
    if checks.bare_metal_only:
        measured = {True: "nested", False: "bare metal", None: "not measured"}[inv.nested]
        add("bare_metal_only", "bare metal", measured, inv.nested is False)
    if checks.accel is not None:
        add("accel", " or ".join(checks.accel), inv.accel or "not measured", inv.accel in checks.accel)
    return out


def _metric_checks(results: RunResults, name: str, threshold_text: str) -> list[CheckResult]:
    threshold = Threshold.parse(threshold_text)
    found: list[tuple[str, float | None, str]] = []  # (subject, value, unit)
    if name.startswith("bringup_"):
        stage = name.removeprefix("bringup_")
        found = [(host, stages[stage], "s") for host, stages in results.bringup.items() if stage in stages]
    else:
        found = [(s.name, s.summary[name].value, s.summary[name].unit) for s in results.scenarios if name in s.summary]
    if not found:
        return [CheckResult(subject="run", check=name, expected=threshold.text, measured="not measured",
                            passed=False, message=f"no scenario or bring-up of this run measured {name}")]
    checks = []
    for subject, value, unit in found:
        if value is None:
            checks.append(CheckResult(subject=subject, check=name, expected=threshold.text, measured="not measured",
                                      passed=False))
            continue
        try:
            passed, message = threshold.check(value, unit), ""
        except ValueError as exc:
            passed, message = False, str(exc)
        checks.append(CheckResult(subject=subject, check=name, expected=threshold.text,
                                  measured=format_value(value, unit), passed=passed, message=message))
    return checks


def qualify(results: RunResults, profile: QualificationProfile) -> QualificationReport:
    """Judge every check of `profile` on `results`."""
    checks: list[CheckResult] = []
    if not results.inventory:
        checks.append(CheckResult(subject="run", check="inventory", expected="an inventory of every host",
                                  measured="none", passed=False,
                                  message="the run collected no inventory (pytest: pass --xenlab-report DIR)"))
    for inv in results.inventory:
        checks.extend(host_checks(inv, profile.hosts))
    for name, threshold in profile.metrics.items():
        checks.extend(_metric_checks(results, name, threshold))
    if profile.scenarios_passed:
        bad = [s for s in results.scenarios if s.outcome not in ("passed", "skipped")]  # not_measured is not passed
        checks.append(CheckResult(
            subject="run", check="scenarios_passed", expected="every scenario passed",
            measured=f"{len(results.scenarios) - len(bad)}/{len(results.scenarios)} passed",
            passed=not bad, message="; ".join(f"{s.name}: {s.outcome}" for s in bad[:5])))
    return QualificationReport(profile=profile.name, profile_description=profile.description, lab=results.lab,
                               accel=results.accel, created_at=results.created_at, hosts=results.inventory,
                               checks=checks)
