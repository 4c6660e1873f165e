"""What a qualification run produces: checks with measured figures and verdicts.

A check is `passed` when everything it measured met its threshold, `failed` when a
figure missed it or the check itself broke, `not_run` when this lab cannot run it (the
reason says why), `not_measured` when it ran but part of what it asks for could not be
measured here (a toolstack that does not offer pause or save): never passed on missing
evidence. The report is schema-versioned
(docs/json-output.md); fields are only added within a version.
"""

from __future__ import annotations

import time
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from .. import __version__
from ..report.units import Threshold, format_value
from ..results import Figure, HostInventory, RunResults, ScenarioResult

SCHEMA = "xenlab.qualify/1"
Verdict = Literal["passed", "failed", "not_run", "not_measured"]


class QModel(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Measured(QModel):
    """One figure of a check, judged against the profile's threshold when it has one."""

    name: str  # e.g. throughput
    value: float | None
    unit: str
    threshold: str = ""  # as written in the profile; "" = recorded, not judged
    passed: bool | None = None  # None when not judged
    meaning: str = ""  # one line a reader needs to know what the number is

    @property
    def text(self) -> str:
        return format_value(self.value, self.unit)


class CheckOutcome(QModel):
    id: str  # unique in the run, e.g. network/h1-h2/lab; the resume state is keyed by it
    check: str  # boot, network, storage, lifecycle, migration, failover, stability, inventory
    subject: str  # what it ran on: a host, a host pair, a guest type
    verdict: Verdict
    reason: str = ""  # why it failed or did not run
    figures: list[Measured] = Field(default_factory=list)
    details: dict = Field(default_factory=dict)  # e.g. the unexpected log lines, samples for plots
    started_at: float = 0.0
    seconds: float = 0.0


def judge(name: str, value: float | None, unit: str, thresholds: dict[str, str], meaning: str = "") -> Measured:
    """A figure against its threshold (if the profile has one); an unmeasured judged figure fails."""
    text = thresholds.get(name, "")
    if not text:
        return Measured(name=name, value=value, unit=unit, meaning=meaning)
    if value is None:
        return Measured(name=name, value=None, unit=unit, threshold=text, passed=False, meaning=meaning)
    try:
        passed = Threshold.parse(text).check(value, unit)
    except ValueError:
        passed = False
    return Measured(name=name, value=value, unit=unit, threshold=text, passed=passed, meaning=meaning)


def outcome_of(check_id: str, check: str, subject: str, figures: list[Measured], started: float,
               reason: str = "", details: dict | None = None, unmeasured: list[str] | None = None) -> CheckOutcome:
    """passed unless a judged figure missed its threshold or `reason` says the check broke;
    not_measured (never passed) when nothing failed but `unmeasured` names what could not be measured."""
    missed = [f for f in figures if f.passed is False]
    why = reason
    if missed and not why:
        why = "; ".join(f"{f.name} {f.text} is not {f.threshold}" for f in missed)
    verdict: Verdict = "failed" if why else "not_measured" if unmeasured else "passed"
    if verdict == "not_measured":
        why = "not measured: " + "; ".join(unmeasured or [])
    return CheckOutcome(id=check_id, check=check, subject=subject, verdict=verdict,
                        reason=why, figures=figures, details=details or {}, started_at=started,
                        seconds=round(time.time() - started, 2))


def not_run(check_id: str, check: str, subject: str, reason: str) -> CheckOutcome:
    return CheckOutcome(id=check_id, check=check, subject=subject, verdict="not_run", reason=reason,
                        started_at=time.time())


class QualifyReport(QModel):
    schema_: str = Field(SCHEMA, alias="schema")
    xenlab_version: str = __version__
    profile: str
    profile_file: str
    lab: str
    backend: str
    accel: str
    started_at: float
    ended_at: float
    inventory: list[HostInventory] = Field(default_factory=list)
    checks: list[CheckOutcome] = Field(default_factory=list)
    phase_seconds: dict[str, float] = Field(default_factory=dict)  # check kind -> seconds spent

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    def as_results(self) -> RunResults:
        """The run as a results file (one pseudo-scenario `qualify/<check id>` per check, its
        figures as the summary): what `xenlab history add` and `xenlab report` read."""
        outcomes = {"passed": "passed", "failed": "failed", "not_run": "skipped", "not_measured": "not_measured"}
        scenarios = [ScenarioResult(
            name=f"qualify/{c.id}", file=self.profile_file, lab=self.lab, toolstack="", outcome=outcomes[c.verdict],
            started_at=c.started_at, ended_at=max(c.started_at, c.started_at + c.seconds),
            summary={f.name: Figure(value=f.value, unit=f.unit, note=f.meaning) for f in c.figures})
            for c in self.checks]
        return RunResults(created_at=self.started_at, lab=self.lab, accel=self.accel, scenarios=scenarios,
                          inventory=self.inventory)

    def count(self, verdict: Verdict) -> int:
        return sum(1 for c in self.checks if c.verdict == verdict)

    @property
    def passed(self) -> bool:
        """No check failed and at least one passed (not-run checks are listed, not counted)."""
        return self.count("failed") == 0 and self.count("passed") > 0

    @property
    def verdict(self) -> str:
        unmeasured = f"{self.count('not_measured')} not measured, " if self.count("not_measured") else ""
        counts = f"{self.count('passed')} passed, {self.count('failed')} failed, {unmeasured}{self.count('not_run')} not run"
        where = f"profile {self.profile}, lab {self.lab}"
        if self.passed:
            return f"PASS: {counts} ({where})"
        failed = [c.id for c in self.checks if c.verdict == "failed"]
        names = ", ".join(failed[:4]) + (", ..." if len(failed) > 4 else "")
        return f"FAIL: {counts}" + (f": {names}" if names else "") + f" ({where})"
