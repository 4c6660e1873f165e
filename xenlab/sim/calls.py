"""What a handler is given and how handler modules declare the messages they implement.

``Handlers`` is an explicit registry: each module of ``xenlab.sim.handlers`` owns one,
and ``xenlab.sim.handlers.registry()`` merges the modules it lists.  Nothing is
registered by importing a module for its side effects.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .datamodel import EPOCH, Datamodel, MessageSpec
from .deployment import Deployment
from .hosts import SimHost
from .model import Database

Handler = Callable[..., Any]
Duration = Callable[["Ctx", tuple], float] | float


@dataclass
class Impl:
    fn: Handler
    duration: Duration = 0.0



class Handlers:
    """The messages one handler module implements: wire name -> ``Impl``."""

    def __init__(self, family: str) -> None:
        self.family = family
        self.table: dict[str, Impl] = {}

    def api(self, name: str, duration: Duration = 0.0):
        """Declare ``fn`` as the implementation of datamodel message ``name``."""

        def deco(fn: Handler) -> Handler:
            if name in self.table:
                raise ValueError(f"{self.family}: {name} implemented twice")
            self.table[name] = Impl(fn, duration)
            return fn

        return deco


@dataclass
class Ctx:
    dep: Deployment
    host: SimHost
    db: Database
    session: str | None
    msg: MessageSpec
    task: str | None = None

    @property
    def dm(self) -> Datamodel:
        return self.dep.dm


def new_task(ctx: Ctx, label: str, description: str = "", cancellable: bool = False) -> str:
    dep, db = ctx.dep, ctx.db
    t = db.create(
        "task",
        name_label=label,
        name_description=description,
        status="pending",
        progress=0.0,
        created=dep.now(),
        finished=EPOCH,
        resident_on=ctx.host.ref,
        allowed_operations=["cancel"] if cancellable else [],
        error_info=[],
        result="",
        type="<none/>",
    )
    if ctx.session and db.exists(ctx.session, "session"):
        srec = db.get(ctx.session, "session")
        if "tasks" in srec and t not in srec["tasks"]:
            srec["tasks"].append(t)
    return t
