"""Object store: one ``Database`` per pool, records shaped by the datamodel.

Records are plain dicts of python values (int, str, bool, float, datetime,
lists, dicts); the wire layer converts them per the datamodel type.  Every
change is stamped with a deployment-wide generation number, which is what
``event.from`` tokens are made of, and back-references (``VM.VBDs`` for
``VBD.VM`` and so on) are maintained here so handlers cannot forget them.
"""

from __future__ import annotations

import bisect
import copy
import itertools
import threading
import uuid as _uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from .datamodel import NULL_REF, Datamodel, load  # re-exported
from .datamodel import get as get_datamodel

__all__ = [
    "NULL_REF",
    "RELATIONS",
    "ApiError",
    "Database",
    "Generation",
    "get_datamodel",
    "load",
    "new_ref",
    "new_uuid",
]


class ApiError(Exception):
    """An xapi failure: code plus string parameters, as sent on the wire."""

    def __init__(self, code: str, *params: Any) -> None:
        super().__init__(code, *params)
        self.code = code
        self.params = [str(p) for p in params]

    @property
    def description(self) -> list[str]:
        return [self.code, *self.params]


def new_uuid() -> str:
    return str(_uuid.uuid4())


def new_ref() -> str:
    return f"OpaqueRef:{_uuid.uuid4()}"


# (class, ref field) -> (target class, set field on the target).  These pairs
# are xapi's one-to-many relations; names are checked against the datamodel.
RELATIONS: dict[tuple[str, str], tuple[str, str]] = {
    ("VBD", "VM"): ("VM", "VBDs"),
    ("VBD", "VDI"): ("VDI", "VBDs"),
    ("VIF", "VM"): ("VM", "VIFs"),
    ("VIF", "network"): ("network", "VIFs"),
    ("PIF", "network"): ("network", "PIFs"),
    ("PIF", "host"): ("host", "PIFs"),
    ("PBD", "host"): ("host", "PBDs"),
    ("PBD", "SR"): ("SR", "PBDs"),
    ("VDI", "SR"): ("SR", "VDIs"),
    ("VM", "resident_on"): ("host", "resident_VMs"),
    ("host_cpu", "host"): ("host", "host_CPUs"),
    ("task", "subtask_of"): ("task", "subtasks"),
    ("VM", "snapshot_of"): ("VM", "snapshots"),
    ("VM", "parent"): ("VM", "children"),
    ("VDI", "snapshot_of"): ("VDI", "snapshots"),
    ("console", "VM"): ("VM", "consoles"),
    ("VTPM", "VM"): ("VM", "VTPMs"),
    ("VM", "appliance"): ("VM_appliance", "VMs"),
    ("crashdump", "VM"): ("VM", "crash_dumps"),
}


def check_relations(dm: Datamodel) -> dict[tuple[str, str], tuple[str, str]]:
    """Keep only relations whose both ends exist in this datamodel export."""
    ok = {}
    for (c, f), (tc, tf) in RELATIONS.items():
        cs, ts = dm.classes.get(c), dm.classes.get(tc)
        if not cs or not ts or f not in cs.fields or tf not in ts.fields:
            continue
        if cs.fields[f].type.kind != "ref" or ts.fields[tf].type.kind != "set":
            continue
        ok[(c, f)] = (tc, tf)
    return ok


class Generation:
    """Deployment-wide monotonically increasing change counter."""

    def __init__(self) -> None:
        self._it = itertools.count(1)
        self.value = 0

    def next(self) -> int:
        self.value = next(self._it)
        return self.value


@dataclass
class Change:
    gen: int
    cls: str
    ref: str
    op: str  # add | mod | del


class Database:
    """One pool's view of the world (callers hold the deployment lock)."""

    def __init__(self, dm: Datamodel, gen: Generation, on_change=None, derive=None) -> None:
        self.dm = dm
        self.gen = gen
        self.id = new_uuid()
        self.tables: dict[str, dict[str, dict[str, Any]]] = {c: {} for c in dm.classes}
        self.cls_of: dict[str, str] = {}
        self.created: dict[str, int] = {}
        self.log: list[Change] = []
        self._log_gens: list[int] = []
        self._relations = check_relations(dm)
        self._back = {}
        for (c, f), (tc, tf) in self._relations.items():
            self._back.setdefault(c, []).append((f, tc, tf))
        self._on_change = on_change
        self._derive = derive  # (db, cls, ref, changed field names) -> None, updates in place
        self.lock = threading.RLock()

    # ------------------------------------------------------------ bookkeeping
    def _record(self, cls: str, ref: str, op: str) -> None:
        g = self.gen.next()
        self.log.append(Change(g, cls, ref, op))
        self._log_gens.append(g)
        if op == "add":
            self.created[ref] = g
        if self._on_change:
            self._on_change()

    def changes_since(self, since: int) -> list[Change]:
        i = bisect.bisect_right(self._log_gens, since)
        return self.log[i:]

    @property
    def last_gen(self) -> int:
        return self._log_gens[-1] if self._log_gens else 0

    # ------------------------------------------------------------ queries
    def exists(self, ref: str, cls: str | None = None) -> bool:
        c = self.cls_of.get(ref)
        return c is not None and (cls is None or c == cls)

    def get(self, ref: str, cls: str | None = None) -> dict[str, Any]:
        """The live record; raise HANDLE_INVALID like xapi for a bad ref."""
        c = self.cls_of.get(ref)
        if c is None or (cls is not None and c != cls):
            raise ApiError("HANDLE_INVALID", cls or "unknown", ref)
        return self.tables[c][ref]

    def all(self, cls: str) -> dict[str, dict[str, Any]]:
        return self.tables[cls]

    def refs(self, cls: str) -> list[str]:
        return list(self.tables[cls])

    def by_uuid(self, cls: str, uuid: str) -> str:
        for ref, rec in self.tables[cls].items():
            if rec.get("uuid") == uuid:
                return ref
        raise ApiError("UUID_INVALID", cls, uuid)

    def where(self, cls: str, **eq: Any) -> list[str]:
        return [r for r, rec in self.tables[cls].items() if all(rec.get(k) == v for k, v in eq.items())]

    def snapshot(self, ref: str) -> dict[str, Any]:
        return copy.deepcopy(self.get(ref))

    # ------------------------------------------------------------ mutation
    def defaults(self, cls: str) -> dict[str, Any]:
        spec = self.dm.cls(cls)
        return {n: copy.deepcopy(f.default) for n, f in spec.fields.items()}

    def create(self, cls: str, /, ref: str | None = None, **fields: Any) -> str:
        spec = self.dm.cls(cls)
        rec = self.defaults(cls)
        unknown = set(fields) - set(spec.fields)
        if unknown:
            raise KeyError(f"{cls} has no field(s) {sorted(unknown)}")
        rec.update(fields)
        if "uuid" in spec.fields and not rec.get("uuid"):
            rec["uuid"] = new_uuid()
        ref = ref or new_ref()
        self.tables[cls][ref] = rec
        self.cls_of[ref] = cls
        if self._derive:
            self._derive(self, cls, ref, set(rec))
        self._record(cls, ref, "add")
        for f, tc, tf in self._back.get(cls, []):
            self._link(rec.get(f), tc, tf, ref)
        return ref

    def adopt(self, cls: str, ref: str, rec: dict[str, Any]) -> None:
        """Insert an existing record (pool join moves objects between databases)."""
        self.tables[cls][ref] = rec
        self.cls_of[ref] = cls
        self._record(cls, ref, "add")

    def _link(self, target: Any, tc: str, tf: str, ref: str) -> None:
        if isinstance(target, str) and target != NULL_REF and self.cls_of.get(target) == tc:
            lst = self.tables[tc][target][tf]
            if ref not in lst:
                lst.append(ref)
                self._record(tc, target, "mod")

    def _unlink(self, target: Any, tc: str, tf: str, ref: str) -> None:
        if isinstance(target, str) and self.cls_of.get(target) == tc:
            lst = self.tables[tc][target][tf]
            if ref in lst:
                lst.remove(ref)
                self._record(tc, target, "mod")

    def set(self, ref: str, /, **fields: Any) -> None:
        cls = self.cls_of.get(ref)
        if cls is None:
            raise ApiError("HANDLE_INVALID", "unknown", ref)
        rec = self.tables[cls][ref]
        changed = False
        for name, value in fields.items():
            if name not in rec:
                raise KeyError(f"{cls}.{name}")
            old = rec[name]
            if old == value:
                continue
            rec[name] = value
            changed = True
            rel = self._relations.get((cls, name))
            if rel:
                self._unlink(old, rel[0], rel[1], ref)
                self._link(value, rel[0], rel[1], ref)
        if changed:
            if self._derive:
                self._derive(self, cls, ref, set(fields))
            self._record(cls, ref, "mod")

    def touch(self, ref: str) -> None:
        """Record a modification made in place (e.g. a map edited by key)."""
        self._record(self.cls_of[ref], ref, "mod")

    def destroy(self, ref: str) -> None:
        cls = self.cls_of.pop(ref, None)
        if cls is None:
            raise ApiError("HANDLE_INVALID", "unknown", ref)
        rec = self.tables[cls].pop(ref)
        self.created.pop(ref, None)
        for f, tc, tf in self._back.get(cls, []):
            self._unlink(rec.get(f), tc, tf, ref)
        self._record(cls, ref, "del")

    def release(self, ref: str) -> tuple[str, dict[str, Any]]:
        """Remove an object without touching back-references (it is moving DB)."""
        cls = self.cls_of.pop(ref)
        rec = self.tables[cls].pop(ref)
        self.created.pop(ref, None)
        self._record(cls, ref, "del")
        return cls, rec

    def counts(self) -> dict[str, int]:
        return {c: len(t) for c, t in self.tables.items()}

    def iter_records(self, cls: str) -> Iterable[tuple[str, dict[str, Any]]]:
        return list(self.tables[cls].items())
