"""Cut a run into N shards for N CI machines: whole labs per shard, balanced by time.

Pure: items (each in a group, with its expected seconds) in, shards out. A group is what
must run on one machine: the tests and scenario items that share a lab (one boot per lab
and process), or a matrix combination. The faces (`pytest --xenlab-shard K/N`, `xenlab
qualify --matrix F --shard K/N`) say what the groups are and where the seconds come from
(the history's earlier runs, else the items' declared estimates, else a default).

The plan is deterministic: every machine of a CI run computes the same plan from the same
items and durations, and takes its own shard. Groups are placed longest first, each on
the shard with the least time so far (ties: the lower shard), the classic LPT rule, at
most 4/3 of the best possible makespan.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field

from .errors import InvalidInput

SHARD_PATTERN = re.compile(r"^\s*(\d{1,4})\s*/\s*(\d{1,4})\s*$")
MAX_SHARDS = 1000
RUN_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
MACHINE_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


@dataclass(frozen=True)
class ShardRef:
    """Shard `index` of `count` (1-based, as users and CI systems count)."""

    index: int
    count: int

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def parse_shard(text: str, where: str = "--shard") -> ShardRef:
    """`"2/3"` -> ShardRef(2, 3); anything else is refused with what to write."""
    match = SHARD_PATTERN.match(text or "")
    if not match:
        raise InvalidInput(f"{where} {text!r}: write K/N, e.g. 2/3 for the second of three shards")
    index, count = int(match.group(1)), int(match.group(2))
    if not 1 <= count <= MAX_SHARDS:
        raise InvalidInput(f"{where} {text}: the number of shards must be 1 to {MAX_SHARDS}")
    if not 1 <= index <= count:
        raise InvalidInput(f"{where} {text}: the shard must be 1 to {count} (shards are counted from 1)")
    return ShardRef(index, count)


def check_run_id(run_id: str, where: str = "run id") -> str:
    if not RUN_ID_PATTERN.match(run_id):
        raise InvalidInput(f"{where} {run_id!r}: letters, digits and . _ : - only (at most 128), "
                           "e.g. the CI pipeline's id")
    return run_id


def check_machine(machine: str, where: str = "machine") -> str:
    if not MACHINE_PATTERN.match(machine):
        raise InvalidInput(f"{where} {machine!r}: letters, digits and . _ - only (at most 128)")
    return machine


@dataclass(frozen=True)
class PlanItem:
    """One test, scenario or combination: the group it must run with, and its expected time."""

    name: str
    group: str
    seconds: float
    source: str = "default"  # history | declared | default: where `seconds` came from


@dataclass(frozen=True)
class Group:
    name: str
    items: tuple[PlanItem, ...]
    overhead_s: float = 0.0  # the group's own cost once, e.g. its lab's bring-up

    @property
    def seconds(self) -> float:
        return self.overhead_s + sum(i.seconds for i in self.items)


@dataclass(frozen=True)
class Shard:
    ref: ShardRef
    groups: tuple[Group, ...] = field(default_factory=tuple)

    @property
    def seconds(self) -> float:
        return sum(g.seconds for g in self.groups)

    @property
    def items(self) -> list[PlanItem]:
        return [i for g in self.groups for i in g.items]

    def describe(self) -> list[str]:
        """What the shard holds and its expected time, as the faces print it."""
        lines = [(f"shard {self.ref}: {len(self.groups)} group(s), {len(self.items)} item(s), "
                  f"expected {format_seconds(self.seconds)}")]
        for group in self.groups:
            sources = sorted({i.source for i in group.items})
            lines.append(f"  {group.name}: {len(group.items)} item(s), {format_seconds(group.seconds)} "
                         f"({', '.join(sources) or 'no items'})")
        return lines


def format_seconds(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def group_items(items: list[PlanItem], overheads: dict[str, float] | None = None) -> list[Group]:
    """Items into groups, in order of first appearance (items keep their order within a group)."""
    members: dict[str, list[PlanItem]] = {}
    for item in items:
        if item.seconds < 0:
            raise ValueError(f"{item.name}: expected seconds {item.seconds} is negative")
        members.setdefault(item.group, []).append(item)
    return [Group(name, tuple(found), (overheads or {}).get(name, 0.0)) for name, found in members.items()]


def plan_shards(items: list[PlanItem], count: int, overheads: dict[str, float] | None = None) -> list[Shard]:
    """`count` shards of whole groups, balanced by expected time (see the module docstring).

    Within a shard, groups keep the order they had in `items`, so a suite's own order
    (a teardown test last) holds on every machine."""
    if count < 1:
        raise ValueError("at least one shard")
    groups = group_items(items, overheads)
    position = {g.name: i for i, g in enumerate(groups)}
    loads = [0.0] * count
    placed: list[list[Group]] = [[] for _ in range(count)]
    for group in sorted(groups, key=lambda g: (-g.seconds, g.name)):
        target = min(range(count), key=lambda k: (loads[k], k))
        placed[target].append(group)
        loads[target] += group.seconds
    return [Shard(ShardRef(k + 1, count), tuple(sorted(placed[k], key=lambda g: position[g.name])))
            for k in range(count)]


def plan_digest(items: list[PlanItem], count: int) -> str:
    """A run id for shards that were given none: the same items and count give the same id on
    every machine (set one per CI run, e.g. its pipeline id, to tell nights apart)."""
    text = "\n".join(f"{i.group}\t{i.name}" for i in items) + f"\n{count}"
    return "plan-" + hashlib.sha256(text.encode()).hexdigest()[:16]
