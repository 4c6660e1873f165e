"""A scenario's steps played in order, without a lab: guests used before they are created,
a pool formed twice, faults healed that are not active, a checkpoint restored under a
fault. `Scenario` validation reports what the replay finds, at the step's line.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .model import Step

OTHER = "other"  # `migrate: {to: other}`: the pool's other member
Loc = tuple[Any, ...]
Problem = tuple[Loc, str]


class Replay:
    """Plays the steps in order to find dangling references and steps out of order.

    A repeat body is played twice (its second pass finds what breaks on repetition); inside
    a second pass, nested repeats are played once, so the cost stays linear in the depth.
    """

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        self.created: dict[str, Loc] = {}
        self.destroyed: set[str] = set()
        self.active: dict[str, Loc] = {}  # fault label -> where it was injected
        self.pool_size: int | None = None
        self.pool_at: Loc | None = None  # where the pool was formed
        self.saved: dict[str, tuple[int | None, Loc | None, dict[str, Loc]]] = {}

    def run(self, steps: list[Step], base: Loc, repeated: bool = False) -> None:
        for index, step in enumerate(steps):
            loc = base + (index,)
            if step.repeat is not None:
                body = loc + ("repeat", "steps")
                self.run(step.repeat.steps, body, repeated)
                if step.repeat.times > 1 and not repeated:
                    self.run(step.repeat.steps, body, repeated=True)
            else:
                self.play(step, loc)

    def need_vm(self, name: str | None, loc: Loc) -> None:
        if name is None or name in self.created:
            return
        if name in self.destroyed:
            self.problems.append((loc, f"guest {name!r} is used after a destroy_vm step destroyed it"))
        else:
            self.problems.append((loc, f"guest {name!r} is used before a create_vm step creates it"))

    def play(self, step: Step, loc: Loc) -> None:
        a = step.action
        match step.kind:
            case "form_pool":
                if self.pool_at is not None:
                    again = " (again, on the next repetition)" if self.pool_at == loc else ""
                    self.problems.append((loc + ("form_pool",), (f"the pool is already formed{again}: a scenario "
                                                                 "forms its pool once; list every member in that "
                                                                 "form_pool")))
                self.pool_size = len(a.members) - len(a.expect_refused)
                self.pool_at = loc
            case "create_vm":
                if self.pool_at is None:
                    self.problems.append((loc + ("create_vm",), (f"guest {a.name!r} needs a pool: put a form_pool "
                                                                 "step before this create_vm")))
                if a.name in self.created:
                    again = " (again, on the next repetition)" if self.created[a.name] == loc else ""
                    self.problems.append((loc + ("create_vm", "name"), f"guest {a.name!r} is already created{again}"))
                self.created[a.name] = loc
                self.destroyed.discard(a.name)
            case "destroy_vm":
                self.need_vm(a, loc + ("destroy_vm",))
                if self.created.pop(a, None) is not None:
                    self.destroyed.add(a)
            case "migrate":
                self.need_vm(a.vm, loc + ("migrate", "vm"))
                if a.during is not None:
                    label = a.during.fault.label
                    if label in self.active:
                        self.problems.append((loc + ("migrate", "during", "fault"),
                                              (f"fault {label!r} is already active here; heal it first or give "
                                              "this one another name")))
                    if a.during.heal_after_s is None:
                        self.active[label] = loc
                if a.to == OTHER and self.pool_size is not None and self.pool_size != 2:
                    self.problems.append((loc + ("migrate", "to"), (f"`to: {OTHER}` needs a pool of two members, "
                                                                    f"this one has {self.pool_size}")))
            case "fault":
                if a.label in self.active:
                    self.problems.append((loc + ("fault",), (f"fault {a.label!r} is already active here; heal it "
                                                             "first or give this one another name")))
                self.active[a.label] = loc
            case "heal":
                if a == "all":
                    self.active.clear()
                elif a in self.active:
                    del self.active[a]
                else:
                    known = ", ".join(self.active) or "none"
                    self.problems.append((loc + ("heal",), (f"no active fault named {a!r} to heal here "
                                                            f"(active: {known})")))
            case "wait":
                if a.for_ is not None:
                    self.need_vm(a.for_.vm, loc + ("wait", "for"))
            case "assert":
                for i, condition in enumerate(a):
                    self.need_vm(condition.vm, loc + ("assert", i))
            case "checkpoint":
                if a.save is not None:
                    self.saved[a.save] = (self.pool_size, self.pool_at, dict(self.created))
                    return
                if self.active:
                    self.problems.append((loc + ("checkpoint",), ("restoring a checkpoint while faults are active "
                                                                  f"({', '.join(self.active)}): heal them first")))
                # a tag saved outside the scenario (`ready`, from bring-up) is a lab without pool or guests
                self.pool_size, self.pool_at, created = self.saved.get(a.restore, (None, None, {}))
                self.created = dict(created)
                self.destroyed -= set(created)
