"""The `suite:` section of a qualification profile: which checks `xenlab qualify` runs, how
long, and the thresholds each measured figure is judged against.

It is a section of the one profile model (`QualificationProfile.suite`), so old profiles
without it keep working for `xenlab report --profile`. Every figure a check measures has
a known name and unit here, so a threshold naming a figure no check measures, or in a
unit of another family, is refused with its line before anything starts.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field

from ..recipe_facts import GUEST_TYPES
from ..validation import StrictModel
from .units import Threshold, unit_family


def _threshold(text: Any) -> str:
    Threshold.parse(str(text))
    return str(text)


ThresholdText = Annotated[str, AfterValidator(_threshold)]
Thresholds = dict[str, ThresholdText]

# check -> figure -> unit: what each check measures (thresholds may only name these).
LIFECYCLE_VERBS = ("start", "pause", "unpause", "save", "restore", "reboot", "shutdown")
SUITE_FIGURES: dict[str, dict[str, str]] = {
    "boot": {"to_xen": "s", "to_ssh": "s", "to_toolstack": "s"},
    "network": {"throughput": "Mbit/s", "retransmits": "count", "latency_avg": "ms", "latency_max": "ms",
                "loss": "%", "mtu": "", "guest_throughput": "Mbit/s"},
    "storage": {"seq_read": "MiB/s", "seq_write": "MiB/s", "rand_read_iops": "IOPS", "rand_write_iops": "IOPS",
                "rand_read_latency": "ms", "rand_write_latency": "ms"},
    "lifecycle": {verb: "s" for verb in LIFECYCLE_VERBS},
    "migration": {"migrations": "count", "downtime_p50": "s", "downtime_max": "s", "migration_duration_p50": "s",
                  "migration_duration_max": "s", "heartbeats_lost": "count"},
    "failover": {"detection": "s", "recovery": "s"},
    "stability": {"unexpected_messages": "count", "leaked_domains": "count"},
}


class AllowPattern(StrictModel):
    """A log line at warning or worse that does not count against the host, and why."""

    pattern: str = Field(min_length=1, description="Python regular expression searched in each line")
    why: str = Field(min_length=1, description="why this message is expected on such hosts")


class Section(StrictModel):
    enabled: bool = True
    thresholds: Thresholds = Field(default_factory=dict)


class BootSection(Section):
    power_cycle: bool = Field(True, description="when the lab came up warm or was already up, power-cycle one "
                                                "host to measure a real boot (else: not run)")
    timeout_s: float = Field(600, gt=0)


class NetworkSection(Section):
    seconds: int = Field(3, ge=1, le=600, description="length of each iperf3 run")
    ping_count: int = Field(10, ge=1, le=10000)
    guest_to_guest: bool = Field(True, description="also measure TCP throughput between two guests on two hosts")
    guest_seconds: int = Field(5, ge=1, le=600, description="length of the guest-to-guest stream")


class StorageSection(Section):
    size_mib: int = Field(64, ge=1, le=1024 * 1024, description="fio file size per run")
    seconds: int = Field(5, ge=1, le=3600, description="length of each fio run")
    targets: list[Literal["shared", "local"]] = Field(default_factory=lambda: ["shared", "local"])


class LifecycleSection(Section):
    guest_types: list[Literal[GUEST_TYPES]] | None = Field(  # type: ignore[valid-type]
        None, description="guest types to cycle (default: every type the lab runs)")
    memory_mib: int = Field(128, ge=32)


class ScenarioSection(Section):
    scenario: str = Field(min_length=1, description="scenario file run through the scenario session")


class StabilitySection(Section):
    allow: list[AllowPattern] = Field(default_factory=list)


class SuiteSpec(StrictModel):
    """The checks of `xenlab qualify`, in the order they run."""

    inventory: Section = Field(default_factory=Section)
    boot: BootSection = Field(default_factory=BootSection)
    network: NetworkSection = Field(default_factory=NetworkSection)
    storage: StorageSection = Field(default_factory=StorageSection)
    lifecycle: LifecycleSection = Field(default_factory=LifecycleSection)
    migration: ScenarioSection | None = None
    failover: ScenarioSection | None = None
    stability: StabilitySection = Field(default_factory=StabilitySection)

    def cross_check(self) -> list[tuple[tuple[Any, ...], str]]:
        """Thresholds on figures a check does not measure, or in a unit of another family."""
        found: list[tuple[tuple[Any, ...], str]] = []
        for check, figures in SUITE_FIGURES.items():
            section = getattr(self, check)
            if section is None:
                continue
            for name, text in section.thresholds.items():
                loc = ("suite", check, "thresholds", name)
                if name not in figures:
                    found.append((loc, (f"suite.{check}.thresholds: {name!r} is not a figure the {check} check "
                                       f"measures (it measures {', '.join(figures)})")))
                    continue
                threshold = Threshold.parse(text)
                unit = figures[name]
                wanted, given = unit_family(unit), unit_family(threshold.unit)
                if threshold.unit and wanted and given and wanted[0] != given[0]:
                    found.append((loc, (f"suite.{check}.thresholds.{name}: {text!r} is in {threshold.unit}, but "
                                       f"{name} is measured in {unit or 'a plain number'}")))
        for loc, pattern in ((("suite", "stability", "allow", i, "pattern"), a.pattern)
                             for i, a in enumerate(self.stability.allow)):
            try:
                re.compile(pattern)
            except re.error as exc:
                found.append((loc, f"suite.stability.allow: {pattern!r} is not a regular expression ({exc})"))
        return found
