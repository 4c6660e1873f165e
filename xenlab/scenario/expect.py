"""Expectations written in scenario files (`downtime: "< 2s"`) and their verdict on a Figure.

Forms: `< 2s`, `<= 1500ms`, `> 99%`, `>= 3`, `== 0`, `!= 0`, `between 1s and 3s`
(inclusive), a bare quantity (`0` means `== 0`), and `ok` / `true` / `yes` (or `not ok` /
`false` / `no`) for yes-or-no figures. Units: `ms`, `s`, `m`/`min` (time), `%`, none (a
count). A time is compared in whatever time unit the figure has. A bad expectation is a
ValueError, which scenario validation reports with the file and line.

A figure that depends on the accelerator takes one bound per accelerator:
`downtime: {tcg: "< 12s", kvm: "< 3s"}`, optionally with `other:` for any other lab (a
simulated pool, real hardware). A lab whose accelerator has no bound there is not judged
on that figure, and the verdict says so: one number cannot be right for both a software
CPU and a hardware one.

Every verdict is one of three: passed, failed, or not_measured (the figure cannot be
measured on this lab, or no bound applies to its accelerator). Not measured is never
counted as passed.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from ..results import ExpectationResult, Figure

TIME_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "min": 60.0}  # to seconds
COUNT_UNITS = ("count", "bytes")
OPERATORS = {
    "<": lambda v, a: v < a,
    "<=": lambda v, a: v <= a,
    ">": lambda v, a: v > a,
    ">=": lambda v, a: v >= a,
    "==": lambda v, a: math.isclose(v, a, rel_tol=1e-9, abs_tol=1e-12),
    "!=": lambda v, a: not math.isclose(v, a, rel_tol=1e-9, abs_tol=1e-12),
}
ACCEL_KEYS = ("tcg", "kvm", "other")  # `other`: any lab whose accelerator is not listed
YES = ("ok", "true", "yes")
NO = ("not ok", "false", "no")

_NUMBER = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)"
_QUANTITY = re.compile(rf"^\s*({_NUMBER})\s*(ms|s|min|m|%)?\s*$")
_COMPARISON = re.compile(r"^\s*(<=|>=|==|!=|<|>|=)\s*(.+)$")
_BETWEEN = re.compile(r"^\s*between\s+(.+?)\s+and\s+(.+)$", re.IGNORECASE)
EXAMPLES = "e.g. '< 2s', '<= 1500ms', '> 99%', '== 0', 'between 1s and 3s', 'ok'"


class ExpectationError(ValueError):
    """An expectation that cannot be read; the message says what would be."""


@dataclass(frozen=True)
class Quantity:
    """A limit: time in seconds (`dimension` "time"), a percentage, or a plain count."""

    value: float
    dimension: str  # "time" | "%" | "count"

    def shown_in(self, unit: str) -> str:
        value = self.value / TIME_UNITS[unit] if self.dimension == "time" and unit in TIME_UNITS else self.value
        return f"{_number(value)}{_unit_suffix(unit)}"


@dataclass(frozen=True)
class Expectation:
    """One parsed expectation; `text` is what the scenario said, kept for reports."""

    text: str
    op: str  # one of OPERATORS, "between", "ok", "not ok"
    limits: tuple[Quantity, ...] = ()

    @property
    def dimension(self) -> str:
        return "bool" if self.op in ("ok", "not ok") else self.limits[0].dimension

    def unit_problem(self, unit: str) -> str:
        """Why this expectation cannot judge a figure measured in `unit` ("" if it can)."""
        if _dimension_of(unit) == self.dimension:
            return ""
        wanted = {"time": "a time such as '< 2s'", "%": "a percentage such as '> 99%'",
                  "count": "a plain number such as '<= 50'", "bool": "'ok' or 'not ok'"}
        return f"is measured in {_unit_name(unit)}: write {wanted.get(_dimension_of(unit), 'a matching unit')}"

    def evaluate(self, figure_name: str, figure: Figure, accel: str = "") -> ExpectationResult:
        """The verdict, with a message a person reads: "downtime 2.40 s is not < 2 s".

        `accel` is accepted for the same call as AccelExpectation; one bound serves every lab."""

        def verdict(passed: bool, message: str) -> ExpectationResult:
            return ExpectationResult(figure=figure_name, expected=self.text, measured=figure, passed=passed,
                                     message=message, verdict="passed" if passed else "failed")

        if figure.value is None and not figure.measurable:
            return ExpectationResult(figure=figure_name, expected=self.text, measured=figure, passed=False,
                                     verdict="not_measured",
                                     message=f"{figure_name} is not measurable here"
                                             + (f": {figure.note}" if figure.note else ""))
        if figure.value is None:
            return verdict(False, f"{figure_name} was not measured" + (f": {figure.note}" if figure.note else ""))
        problem = self.unit_problem(figure.unit)
        if problem:
            return verdict(False, f"cannot check {figure_name} against {self.text!r}: it {problem}")
        shown = _show(figure)
        if self.op in ("ok", "not ok"):
            truthy = bool(figure.value)
            passed = truthy if self.op == "ok" else not truthy
            detail = f" ({figure.note})" if figure.note else ""
            return verdict(passed, f"{figure_name} is {shown}" + ("" if passed else f", expected {self.op}{detail}"))
        value = figure.value * TIME_UNITS[figure.unit] if self.dimension == "time" else figure.value
        if self.op == "between":
            low, high = self.limits
            passed = low.value <= value <= high.value
            wanted = f"between {low.shown_in(figure.unit)} and {high.shown_in(figure.unit)}"
        else:
            passed = OPERATORS[self.op](value, self.limits[0].value)
            wanted = f"{self.op} {self.limits[0].shown_in(figure.unit)}"
        return verdict(passed, f"{figure_name} {shown} {'is' if passed else 'is not'} {wanted}")


@dataclass(frozen=True)
class AccelExpectation:
    """One expectation per accelerator (`{tcg: "< 12s", kvm: "< 3s"}`); judged by the lab's."""

    bounds: tuple[tuple[str, Expectation], ...]  # (accelerator key, its expectation), in file order

    @property
    def text(self) -> str:
        return ", ".join(f"{key}: {expectation.text}" for key, expectation in self.bounds)

    def bound_for(self, accel: str) -> tuple[str, Expectation] | None:
        """The bound that judges a lab running under `accel`: its own, else `other`, else none."""
        table = dict(self.bounds)
        for key in (accel, "other"):
            if key in table:
                return key, table[key]
        return None

    def unit_problem(self, unit: str) -> str:
        return next((f"({key}) {p}" for key, e in self.bounds if (p := e.unit_problem(unit))), "")

    def evaluate(self, figure_name: str, figure: Figure, accel: str = "") -> ExpectationResult:
        chosen = self.bound_for(accel)
        if chosen is None:
            listed = ", ".join(key for key, _ in self.bounds)
            return ExpectationResult(figure=figure_name, expected=self.text, measured=figure, passed=False,
                                     verdict="not_measured",
                                     message=f"{figure_name} has no bound for accelerator {accel or 'unknown'} "
                                             f"(bounds given for {listed}); not judged")
        key, expectation = chosen
        result = expectation.evaluate(figure_name, figure)
        return result.model_copy(update={"expected": f"{expectation.text} ({key})",
                                         "message": f"{result.message} (bound for {key})"})


def parse_expectation(raw: object) -> Expectation | AccelExpectation:
    """Read an expectation as written in YAML (a string, a bool, a number, or one per accelerator)."""
    if isinstance(raw, dict):
        return _parse_per_accel(raw)
    return _parse_one(raw)


def _parse_per_accel(raw: dict) -> AccelExpectation:
    if not raw:
        raise ExpectationError(f"a per-accelerator expectation names at least one of {', '.join(ACCEL_KEYS)}")
    bounds = []
    for key, value in raw.items():
        if key not in ACCEL_KEYS:
            raise ExpectationError(f"{key!r} is not an accelerator: a per-accelerator expectation has keys "
                                   f"{', '.join(ACCEL_KEYS)}, e.g. {{tcg: '< 12s', kvm: '< 3s'}}")
        if isinstance(value, dict):
            raise ExpectationError(f"the bound for {key} is one expectation ({EXAMPLES}), not a mapping")
        bounds.append((key, _parse_one(value)))
    dimensions = {e.dimension for _, e in bounds}
    if len(dimensions) > 1:
        raise ExpectationError("every accelerator's bound needs the same kind of unit "
                               f"(given: {', '.join(f'{k}: {e.text}' for k, e in bounds)})")
    return AccelExpectation(tuple(bounds))


def _parse_one(raw: object) -> Expectation:
    if isinstance(raw, bool):
        return Expectation("ok" if raw else "not ok", "ok" if raw else "not ok")
    if isinstance(raw, (int, float)):
        text = _number(float(raw))
    elif isinstance(raw, str):
        text = raw.strip()
    else:
        raise ExpectationError(f"an expectation is a string ({EXAMPLES}), not {type(raw).__name__}")
    lowered = " ".join(text.lower().split())
    if lowered in YES:
        return Expectation(text, "ok")
    if lowered in NO:
        return Expectation(text, "not ok")
    between = _BETWEEN.match(text)
    if between:
        low, high = _quantity(between.group(1), text), _quantity(between.group(2), text)
        if low.dimension != high.dimension:
            raise ExpectationError(f"{text!r}: both ends of 'between' need the same kind of unit")
        if low.value > high.value:
            raise ExpectationError(f"{text!r}: the lower end is above the upper end")
        return Expectation(text, "between", (low, high))
    comparison = _COMPARISON.match(text)
    if comparison:
        op = "==" if comparison.group(1) == "=" else comparison.group(1)
        return Expectation(text, op, (_quantity(comparison.group(2), text),))
    if _QUANTITY.match(text):
        return Expectation(text, "==", (_quantity(text, text),))
    raise ExpectationError(f"cannot read expectation {text!r}: {EXAMPLES}")


def _quantity(part: str, whole: str) -> Quantity:
    match = _QUANTITY.match(part)
    if not match:
        raise ExpectationError(f"cannot read expectation {whole!r}: {part.strip()!r} is not a number with an "
                               f"optional unit (ms, s, m, %); {EXAMPLES}")
    value, unit = float(match.group(1)), match.group(2)
    if unit in TIME_UNITS:
        return Quantity(value * TIME_UNITS[unit], "time")
    if unit == "%":
        return Quantity(value, "%")
    return Quantity(value, "count")


def _dimension_of(unit: str) -> str:
    if unit in TIME_UNITS:
        return "time"
    if unit in COUNT_UNITS:
        return "count"
    return unit  # "%", "bool"


def _unit_name(unit: str) -> str:
    return {"s": "seconds", "ms": "milliseconds", "m": "minutes", "min": "minutes", "%": "percent",
            "count": "a count", "bytes": "bytes", "bool": "yes or no"}.get(unit, unit)


def _unit_suffix(unit: str) -> str:
    if unit == "%":
        return "%"
    if unit in ("count", "bool", ""):
        return ""
    return f" {unit}"


def _number(value: float) -> str:
    """2.0 -> "2", 1.5 -> "1.5", 0.125 -> "0.125" (a limit as a person would write it)."""
    return f"{value:.6f}".rstrip("0").rstrip(".") if value != int(value) else str(int(value))


def _show(figure: Figure) -> str:
    """A measured value: times with two decimals, counts whole, yes-or-no as ok / not ok."""
    assert figure.value is not None
    if figure.unit == "bool":
        return "ok" if figure.value else "not ok"
    if figure.unit in COUNT_UNITS:
        return _number(figure.value) if figure.value == int(figure.value) else f"{figure.value:.2f}"
    if figure.unit == "%":
        return f"{figure.value:.1f}%"
    return f"{figure.value:.2f}{_unit_suffix(figure.unit)}"
