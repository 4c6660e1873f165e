"""The simulator's datamodel: typed, queryable specs of xapi's classes and messages.

Everything the simulator knows about classes, fields, types, enums, messages
and error codes comes from ``data/datamodel.json``, a compact file shipped in
the package and derived from xapi's full export (``xenapi.json``) by
``scripts/derive_datamodel.py``.  Only facts (names, types, qualifiers,
defaults, lifecycle) are kept; nothing at run time reads the export.
"""

from __future__ import annotations

import datetime as _dt
import json
import re
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

COMPACT = "data/datamodel.json"  # package-relative
FORMAT = "xenlab.sim.datamodel/1"

NULL_REF = "OpaqueRef:NULL"
EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_dt.UTC)


# --------------------------------------------------------------------------- types


@dataclass(frozen=True)
class Type:
    """A parsed datamodel type such as ``(string -> VM ref) map``."""

    kind: str  # string|int|float|bool|datetime|ref|enum|set|map|record|option|void|opaque
    name: str = ""  # class for ref/record, enum name for enum
    elem: Type | None = None  # set/option element, map value
    key: Type | None = None  # map key

    def __str__(self) -> str:  # pragma: no cover - debugging aid
        if self.kind in ("ref", "record"):
            return f"{self.name} {self.kind}"
        if self.kind == "enum":
            return f"enum {self.name}"
        if self.kind in ("set", "option"):
            return f"{self.elem} {self.kind}"
        if self.kind == "map":
            return f"({self.key} -> {self.elem}) map"
        return self.kind


_SCALARS = {"string", "int", "float", "bool", "datetime", "void"}


def _split_top(s: str, sep: str) -> list[str]:
    depth, parts, cur = 0, [], ""
    i = 0
    while i < len(s):
        if s[i] == "(":
            depth += 1
        elif s[i] == ")":
            depth -= 1
        if depth == 0 and s.startswith(sep, i):
            parts.append(cur)
            cur = ""
            i += len(sep)
            continue
        cur += s[i]
        i += 1
    parts.append(cur)
    return parts


@cache
def parse_type(text: str) -> Type:
    """Parse the datamodel's textual type syntax."""
    s = text.strip()
    if s in _SCALARS:
        return Type(s)
    for suffix in (" set", " option"):
        if s.endswith(suffix):
            return Type(suffix.strip(), elem=parse_type(s[: -len(suffix)]))
    if s.endswith(" map") and s.startswith("("):
        inner = s[: -len(" map")].strip()
        assert inner[0] == "(" and inner[-1] == ")", text
        k, v = _split_top(inner[1:-1], "->")
        return Type("map", key=parse_type(k), elem=parse_type(v))
    if s.startswith("(") and s.endswith(")"):
        return parse_type(s[1:-1])
    if s.startswith("enum "):
        return Type("enum", name=s[5:].strip())
    if s.endswith(" ref"):
        return Type("ref", name=s[:-4].strip())
    if s.endswith(" record"):
        return Type("record", name=s[:-7].strip())
    return Type("opaque", name=s)


# --------------------------------------------------------------------------- specs


@dataclass(frozen=True)
class FieldSpec:
    name: str
    type: Type
    qualifier: str  # RW | RO/constructor | RO/runtime
    default: Any  # python value (already parsed)
    has_default: bool
    state: str = "Published_s"  # lifecycle; Removed_s fields stay off the wire

    @property
    def rw(self) -> bool:
        return self.qualifier == "RW"

    @property
    def in_constructor(self) -> bool:
        """Fields a ``create`` record carries (xapi: RW and static RO)."""
        return self.qualifier in ("RW", "RO/constructor")


@dataclass(frozen=True)
class ParamSpec:
    name: str
    type: Type


@dataclass(frozen=True)
class MessageSpec:
    cls: str
    name: str
    params: tuple[ParamSpec, ...]  # all params, including session_id if any
    result: Type
    result_text: str
    errors: tuple[str, ...]
    implicit: bool
    state: str  # lifecycle state, e.g. Published_s / Removed_s

    @property
    def wire_name(self) -> str:
        return f"{self.cls}.{self.name}"

    @property
    def has_session(self) -> bool:
        return bool(self.params) and self.params[0].type == Type("ref", name="session")

    @property
    def args(self) -> tuple[ParamSpec, ...]:
        """Parameters after the session."""
        return self.params[1:] if self.has_session else self.params

    @property
    def removed(self) -> bool:
        return self.state == "Removed_s"


@dataclass
class ClassSpec:
    name: str
    fields: dict[str, FieldSpec]
    messages: dict[str, MessageSpec]
    enums: dict[str, tuple[str, ...]]


@dataclass
class Datamodel:
    source: str  # where the compact datamodel was read from
    classes: dict[str, ClassSpec]
    enums: dict[str, tuple[str, ...]] = field(default_factory=dict)
    error_codes: frozenset[str] = frozenset()

    def cls(self, name: str) -> ClassSpec:
        return self.classes[name]

    def message(self, cls: str, name: str) -> MessageSpec | None:
        c = self.classes.get(cls)
        return c.messages.get(name) if c else None

    def enum_values(self, name: str) -> tuple[str, ...]:
        return self.enums[name]

    def class_by_lower(self, lower: str) -> str | None:
        for n in self.classes:
            if n.lower() == lower.lower():
                return n
        return None


# --------------------------------------------------------------------------- defaults


def type_default(t: Type, enums: dict[str, tuple[str, ...]]) -> Any:
    """Zero value of a type, used when the export gives no explicit default."""
    k = t.kind
    if k == "string":
        return ""
    if k == "int":
        return 0
    if k == "float":
        return 0.0
    if k == "bool":
        return False
    if k == "datetime":
        return EPOCH
    if k == "ref":
        return NULL_REF
    if k == "enum":
        vals = enums.get(t.name, ())
        return vals[0] if vals else ""
    if k == "set":
        return []
    if k == "map":
        return {}
    if k == "option":
        return None
    return None


_TOKEN_RE = re.compile(r'"((?:[^"\\]|\\.)*)"|([^\s{},"]+(?:\s+[^\s{},"->]+)*)|->|[{},]')


def _parse_literal(text: str, t: Type, enums: dict[str, tuple[str, ...]]) -> Any:
    s = text.strip()
    k = t.kind
    if k in ("set", "map"):
        if not (s.startswith("{") and s.endswith("}")):
            return type_default(t, enums)
        body = s[1:-1].strip()
        if not body:
            return [] if k == "set" else {}
        if k == "set":
            items = [x.strip() for x in _split_top(body, ",")]
            return [_parse_literal(x, t.elem, enums) for x in items if x]  # type: ignore[arg-type]
        out = {}
        for item in _split_top(body, ","):
            if "->" not in item:
                continue
            a, b = item.split("->", 1)
            out[_parse_literal(a, t.key, enums)] = _parse_literal(b, t.elem, enums)  # type: ignore[arg-type]
        return out
    if k == "string":
        if len(s) >= 2 and s[0] == '"' and s[-1] == '"':
            return s[1:-1]
        return s
    if k == "int":
        try:
            return int(s)
        except ValueError:
            return 0
    if k == "float":
        try:
            return float(s)
        except ValueError:
            return 0.0
    if k == "bool":
        return s.lower() == "true"
    if k == "datetime":
        return parse_datetime(s)
    if k == "ref":
        return s if s.startswith("OpaqueRef:") and s != "OpaqueRef:" else NULL_REF
    if k == "enum":
        vals = enums.get(t.name, ())
        return s if s in vals else (vals[0] if vals else s)
    if k == "option":
        return None
    return None


def parse_datetime(s: str) -> _dt.datetime:
    """Accept xapi's compact ISO 8601 forms (``20240101T00:00:00Z``)."""
    s = s.strip()
    for fmt in ("%Y%m%dT%H:%M:%SZ", "%Y%m%dT%H:%M:%S", "%Y-%m-%dT%H:%M:%SZ", "%Y-%m-%dT%H:%M:%S"):
        try:
            return _dt.datetime.strptime(s, fmt).replace(tzinfo=_dt.UTC)
        except ValueError:
            continue
    try:
        d = _dt.datetime.fromisoformat(s)
        return d if d.tzinfo else d.replace(tzinfo=_dt.UTC)
    except ValueError:
        return EPOCH


# --------------------------------------------------------------------------- loading


def _compact_text(path: Path | str | None) -> tuple[str, str]:
    if path is not None:
        return Path(path).read_text(), str(path)
    ref = resources.files(__package__).joinpath(COMPACT)
    return ref.read_text(), f"{__package__}/{COMPACT}"


def load(path: Path | str | None = None) -> Datamodel:
    """Parse a compact datamodel (default: the one shipped in the package)."""
    text, where = _compact_text(path)
    raw = json.loads(text)
    if raw.get("format") != FORMAT:
        raise ValueError(f"{where}: not a {FORMAT} file (regenerate it with scripts/derive_datamodel.py)")
    enums: dict[str, tuple[str, ...]] = {}
    for c in raw["classes"]:
        for name, values in c["enums"]:
            enums[name] = tuple(values)
    classes: dict[str, ClassSpec] = {}
    codes: set[str] = set()
    for c in raw["classes"]:
        fields: dict[str, FieldSpec] = {}
        for f in c["fields"]:
            t = parse_type(f["type"])
            if "default" in f:
                dflt, has = _parse_literal(f["default"], t, enums), True
            else:
                dflt, has = type_default(t, enums), False
            fields[f["name"]] = FieldSpec(f["name"], t, f["qualifier"], dflt, has, f.get("state", "Published_s"))
        msgs: dict[str, MessageSpec] = {}
        for m in c["messages"]:
            errors = tuple(m.get("errors", ()))
            codes.update(errors)
            msgs[m["name"]] = MessageSpec(
                cls=c["name"],
                name=m["name"],
                params=tuple(ParamSpec(n, parse_type(t)) for n, t in m["params"]),
                result=parse_type(m["result"]),
                result_text=m["result"],
                errors=errors,
                implicit=bool(m.get("implicit")),
                state=m.get("state", "Published_s"),
            )
        classes[c["name"]] = ClassSpec(c["name"], fields, msgs, {n: tuple(v) for n, v in c["enums"]})
    return Datamodel(source=where, classes=classes, enums=enums, error_codes=frozenset(codes))


_CACHE: dict[str, Datamodel] = {}


def get(path: Path | str | None = None) -> Datamodel:
    """Process-wide cached datamodel (parsed once per file)."""
    key = str(path) if path else ""
    if key not in _CACHE:
        _CACHE[key] = load(path)
    return _CACHE[key]
