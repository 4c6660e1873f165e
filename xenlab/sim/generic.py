"""Implicit messages xapi generates for every class (getters, setters, ...).

Which of them exist is read from the datamodel export (``implicit`` messages
and the field qualifiers), so a class gets exactly the accessors xapi has.
"""

from __future__ import annotations

import copy
import datetime as _dt
import re
from collections.abc import Callable
from typing import Any

from .datamodel import Datamodel, MessageSpec
from .model import ApiError
from .wire import DecodeError, decode, fmt_datetime

Handler = Callable[..., Any]


# ------------------------------------------------------------------ expression language
# xapi's Db_filter grammar: value "=" value | expr and/or expr | not expr |
# true | false | ( expr ); value is field "name" or "literal".

_TOK = re.compile(r'\s*(?:(=)|(\()|(\))|"([^"]*)"|([A-Za-z_]+))')


class _ParseError(Exception):
    pass


def _tokens(s: str) -> list[tuple[str, str]]:
    out, i = [], 0
    while i < len(s):
        if s[i:].strip() == "":
            break
        m = _TOK.match(s, i)
        if not m:
            raise _ParseError
        i = m.end()
        if m.group(1):
            out.append(("EQ", "="))
        elif m.group(2):
            out.append(("LP", "("))
        elif m.group(3):
            out.append(("RP", ")"))
        elif m.group(4) is not None:
            out.append(("ID", m.group(4)))
        else:
            w = m.group(5)
            if w not in ("true", "false", "field", "and", "or", "not"):
                raise _ParseError
            out.append((w.upper(), w))
    return out


def parse_expr(s: str):
    toks = _tokens(s)
    pos = 0

    def peek():
        return toks[pos][0] if pos < len(toks) else "EOF"

    def take(kind):
        nonlocal pos
        if peek() != kind:
            raise _ParseError
        pos += 1
        return toks[pos - 1][1]

    def value():
        if peek() == "FIELD":
            take("FIELD")
            return ("field", take("ID"))
        return ("lit", take("ID"))

    def atom():
        k = peek()
        if k == "NOT":
            take("NOT")
            return ("not", atom())
        if k == "TRUE":
            take("TRUE")
            return ("true",)
        if k == "FALSE":
            take("FALSE")
            return ("false",)
        if k == "LP":
            take("LP")
            e = expr()
            take("RP")
            return e
        a = value()
        take("EQ")
        return ("eq", a, value())

    def expr():
        e = atom()
        while peek() in ("AND", "OR"):  # same precedence, left-assoc
            op = take(peek()).lower()
            e = (op, e, atom())
        return e

    e = expr()
    if peek() != "EOF":
        raise _ParseError
    return e


def db_string(v: Any) -> str:
    """Value as xapi's database stores it (what the filter compares)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, _dt.datetime):
        return fmt_datetime(v)
    if isinstance(v, list):
        return "(" + " ".join(f"'{db_string(x)}'" for x in v) + ")"
    if isinstance(v, dict):
        return "(" + " ".join(f"('{db_string(k)}' '{db_string(x)}')" for k, x in v.items()) + ")"
    return str(v)


def eval_expr(e, rec: dict[str, Any]) -> bool:
    op = e[0]
    if op == "true":
        return True
    if op == "false":
        return False
    if op == "not":
        return not eval_expr(e[1], rec)
    if op == "and":
        return eval_expr(e[1], rec) and eval_expr(e[2], rec)
    if op == "or":
        return eval_expr(e[1], rec) or eval_expr(e[2], rec)

    def val(v):
        if v[0] == "lit":
            return v[1]
        name = v[1]
        if name not in rec:
            name = name.replace("__", "_")  # DB column names use "__" for "/"
        if name not in rec:
            raise KeyError(v[1])
        return db_string(rec[name])

    return val(e[1]) == val(e[2])


def records_where(db, cls: str, expr: str) -> dict[str, dict[str, Any]]:
    try:
        tree = parse_expr(expr)
    except _ParseError:
        raise ApiError("INVALID_VALUE", expr, "Parsing.Parse_error") from None
    out = {}
    for ref, rec in db.iter_records(cls):
        try:
            if eval_expr(tree, rec):
                out[ref] = rec
        except KeyError as k:
            raise ApiError("INVALID_VALUE", expr, f"Not_found({k})") from None
    return out


# ------------------------------------------------------------------ constructors


class FieldNotFound(Exception):
    pass


def ctor_fields(dm: Datamodel, cls: str, record: dict[str, Any]) -> dict[str, Any]:
    """Decode a ``create`` record: every constructor field, default if allowed."""
    out = {}
    for name, f in dm.cls(cls).fields.items():
        if not f.in_constructor:
            continue
        if name in record:
            try:
                out[name] = decode(dm, record[name], f.type)
            except DecodeError:
                raise ApiError("FIELD_TYPE_ERROR", name) from None
        elif f.has_default:
            out[name] = copy.deepcopy(f.default)
        else:
            raise ApiError("INTERNAL_ERROR", f'Server_helpers.Dispatcher_FieldNotFound("{name}")')
    return out


# ------------------------------------------------------------------ factory


def make(dm: Datamodel, m: MessageSpec) -> Handler | None:
    cls, name = m.cls, m.name
    fields = dm.cls(cls).fields
    nargs = len(m.args)

    if name == "get_record" and nargs == 1:
        return lambda ctx, ref: ctx.db.get(ref, cls)
    if name == "get_all" and nargs == 0:
        return lambda ctx: ctx.db.refs(cls)
    if name == "get_all_records" and nargs == 0:
        return lambda ctx: dict(ctx.db.iter_records(cls))
    if name == "get_all_records_where" and nargs == 1:
        return lambda ctx, expr: records_where(ctx.db, cls, expr)
    if name == "get_by_uuid" and nargs == 1:
        return lambda ctx, uuid: ctx.db.by_uuid(cls, uuid)
    if name == "get_by_name_label" and nargs == 1:
        return lambda ctx, label: ctx.db.where(cls, name_label=label)
    if name == "create" and m.implicit and nargs == 1:

        def create(ctx, record):
            return ctx.db.create(cls, **ctor_fields(ctx.dm, cls, record))

        return create
    if name == "destroy" and m.implicit and nargs == 1:

        def destroy(ctx, ref):
            ctx.db.get(ref, cls)
            ctx.db.destroy(ref)

        return destroy
    if name.startswith("get_") and nargs == 1 and name[4:] in fields:
        fname = name[4:]
        return lambda ctx, ref: ctx.db.get(ref, cls)[fname]
    if not m.implicit:
        return None
    if name.startswith("set_") and nargs == 2 and name[4:] in fields:
        fname = name[4:]

        def setter(ctx, ref, value):
            ctx.db.get(ref, cls)
            ctx.db.set(ref, **{fname: value})

        return setter
    if name.startswith("add_to_") and nargs == 3 and name[7:] in fields:
        fname = name[7:]

        def add_to(ctx, ref, key, value):
            rec = ctx.db.get(ref, cls)
            if key in rec[fname]:
                raise ApiError("MAP_DUPLICATE_KEY", cls, fname, ref, key)
            rec[fname][key] = value
            ctx.db.touch(ref)

        return add_to
    if name.startswith("remove_from_") and nargs == 2 and name[12:] in fields:
        fname = name[12:]

        def remove_from(ctx, ref, key):
            rec = ctx.db.get(ref, cls)
            if key in rec[fname]:
                del rec[fname][key]
                ctx.db.touch(ref)

        return remove_from
    if name.startswith("add_") and nargs == 2 and name[4:] in fields and fields[name[4:]].type.kind == "set":
        fname = name[4:]

        def add(ctx, ref, value):
            rec = ctx.db.get(ref, cls)
            if value not in rec[fname]:
                rec[fname].append(value)
                ctx.db.touch(ref)

        return add
    if name.startswith("remove_") and nargs == 2 and name[7:] in fields and fields[name[7:]].type.kind == "set":
        fname = name[7:]

        def remove(ctx, ref, value):
            rec = ctx.db.get(ref, cls)
            if value in rec[fname]:
                rec[fname].remove(value)
                ctx.db.touch(ref)

        return remove
    return None
