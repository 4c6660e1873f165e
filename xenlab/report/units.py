"""Quantities with units, thresholds ("< 5s") and version requirements (">= 4.17").

Figures keep their unit (see xenlab.results); a threshold may be written in another unit of
the same family (ms against s), so comparisons convert instead of guessing. A threshold
in a different family than the figure (s against MiB) is a mistake and is reported.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable
from dataclasses import dataclass

# unit -> (family, factor to the family's base unit)
UNITS: dict[str, tuple[str, float]] = {
    "us": ("time", 1e-6), "µs": ("time", 1e-6), "ms": ("time", 1e-3), "s": ("time", 1.0),
    "min": ("time", 60.0), "h": ("time", 3600.0),
    "B": ("size", 1.0), "bytes": ("size", 1.0), "KiB": ("size", 1024.0), "MiB": ("size", 1024.0 ** 2),
    "GiB": ("size", 1024.0 ** 3), "KB": ("size", 1e3), "MB": ("size", 1e6), "GB": ("size", 1e9),
    "B/s": ("rate", 1.0), "KiB/s": ("rate", 1024.0), "MiB/s": ("rate", 1024.0 ** 2), "MB/s": ("rate", 1e6),
    "bit/s": ("bitrate", 1.0), "Mbit/s": ("bitrate", 1e6), "Gbit/s": ("bitrate", 1e9),
    "IOPS": ("iops", 1.0), "%": ("percent", 1.0), "count": ("count", 1.0), "": ("number", 1.0), "bool": ("bool", 1.0),
}

COMPARATORS: dict[str, Callable[[float, float], bool]] = {
    "<=": operator.le, ">=": operator.ge, "==": operator.eq, "!=": operator.ne, "<": operator.lt, ">": operator.gt,
}
_OPS = "|".join(re.escape(op) for op in COMPARATORS)
_THRESHOLD = re.compile(rf"^\s*({_OPS})\s*(-?\d+(?:\.\d+)?(?:[eE]-?\d+)?)\s*([A-Za-zµ%/]*)\s*$")
_VERSION_REQ = re.compile(rf"^\s*({_OPS})\s*(\d+(?:\.\d+)*)\s*$")
_LEADING_VERSION = re.compile(r"(\d+(?:\.\d+)*)")


def unit_family(unit: str) -> tuple[str, float] | None:
    return UNITS.get(unit.strip())


def convert(value: float, from_unit: str, to_unit: str) -> float:
    """`value` in `from_unit` expressed in `to_unit`; ValueError across families."""
    if from_unit == to_unit:
        return value
    a, b = unit_family(from_unit), unit_family(to_unit)
    if a is None or b is None or a[0] != b[0]:
        raise ValueError(f"cannot compare {from_unit or 'a plain number'} with {to_unit or 'a plain number'}")
    return value * a[1] / b[1]


def format_value(value: float | None, unit: str = "") -> str:
    """Short human form: 0.84 s, 2048 MiB, 12 count -> '12'."""
    if value is None:
        return "not measured"
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return str(value)
    text = f"{value:.0f}" if float(value).is_integer() and abs(value) >= 1 else f"{value:.3g}"
    return text if unit in ("", "count") else f"{text} {unit}"


@dataclass(frozen=True)
class Threshold:
    """A bound a measured figure must satisfy, e.g. `< 5s`."""

    op: str
    value: float
    unit: str
    text: str

    @classmethod
    def parse(cls, text: str) -> Threshold:
        match = _THRESHOLD.match(str(text))
        if not match:
            raise ValueError(f"{text!r} is not a threshold like '< 5s' or '>= 100 MiB/s'")
        op, number, unit = match.groups()
        if unit and unit_family(unit) is None:
            raise ValueError(f"{text!r}: unknown unit {unit!r} (known: {', '.join(u for u in UNITS if u)})")
        return cls(op, float(number), unit, str(text).strip())

    def check(self, value: float, unit: str) -> bool:
        """Does `value` (in `unit`) satisfy this bound? ValueError when the units do not compare."""
        measured = convert(value, unit, self.unit) if self.unit else value
        return COMPARATORS[self.op](measured, self.value)

    def __str__(self) -> str:
        return self.text


def version_tuple(text: str) -> tuple[int, ...] | None:
    """The leading dotted number of a version string: '4.17.5-pre' -> (4, 17, 5)."""
    match = _LEADING_VERSION.search(text or "")
    return tuple(int(p) for p in match.group(1).split(".")) if match else None


@dataclass(frozen=True)
class VersionRequirement:
    """`>= 4.17`: compared part by part, missing parts count as 0 (4.17 == 4.17.0)."""

    op: str
    version: tuple[int, ...]
    text: str

    @classmethod
    def parse(cls, text: str) -> VersionRequirement:
        match = _VERSION_REQ.match(str(text))
        if not match:
            raise ValueError(f"{text!r} is not a version requirement like '>= 4.17'")
        return cls(match.group(1), tuple(int(p) for p in match.group(2).split(".")), str(text).strip())

    def check(self, version: str) -> bool:
        found = version_tuple(version)
        if found is None:
            raise ValueError(f"no version number in {version!r}")
        width = max(len(found), len(self.version))
        return COMPARATORS[self.op](found + (0,) * (width - len(found)),
                                    self.version + (0,) * (width - len(self.version)))

    def __str__(self) -> str:
        return self.text
