"""Type-directed conversion between store values and XML-RPC / JSON-RPC values.

xapi marshals 64-bit ints as strings over XML-RPC but as numbers over
JSON-RPC, datetimes as ``dateTime.iso8601`` (XML) or strings (JSON), and map
keys always as strings.  Conversions are driven by the datamodel types so the
store can keep natural python values.
"""

from __future__ import annotations

import datetime as _dt
import xmlrpc.client
from collections.abc import Callable
from typing import Any

from .datamodel import Datamodel, Type, parse_datetime
from .model import ApiError

XML = "xml"
JSON = "json"


class Lazy:
    """A value whose wire form depends on the protocol (e.g. event snapshots)."""

    def __init__(self, fn: Callable[[str], Any]) -> None:
        self.fn = fn


def fmt_datetime(d: _dt.datetime) -> str:
    return d.astimezone(_dt.UTC).strftime("%Y%m%dT%H:%M:%SZ")


def _key(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def encode(dm: Datamodel, value: Any, t: Type | None, proto: str) -> Any:
    """Python store value -> protocol value."""
    if isinstance(value, Lazy):
        return value.fn(proto)
    if t is None or t.kind == "opaque":
        return encode_untyped(value, proto)
    k = t.kind
    if k == "void":
        return ""
    if k == "int":
        v = int(value or 0)
        return str(v) if proto == XML else v
    if k == "float":
        return float(value or 0.0)
    if k == "bool":
        return bool(value)
    if k == "datetime":
        d = value if isinstance(value, _dt.datetime) else parse_datetime(str(value))
        return xmlrpc.client.DateTime(fmt_datetime(d)) if proto == XML else fmt_datetime(d)
    if k in ("string", "ref", "enum"):
        return "" if value is None else str(value)
    if k == "set":
        return [encode(dm, v, t.elem, proto) for v in (value or [])]
    if k == "map":
        return {_key(kk): encode(dm, vv, t.elem, proto) for kk, vv in (value or {}).items()}
    if k == "option":
        return encode(dm, value, t.elem, proto) if value is not None else ""
    if k == "record":
        return encode_record(dm, t.name, value, proto)
    return encode_untyped(value, proto)


def encode_record(dm: Datamodel, cls: str, rec: dict[str, Any], proto: str) -> dict[str, Any]:
    spec = dm.classes.get(cls)
    if spec is None:
        return encode_untyped(rec, proto)
    out = {}
    for name, f in spec.fields.items():
        if f.state == "Removed_s":
            continue
        v = rec.get(name, f.default)
        if f.type.kind == "option" and v is None:
            continue
        out[name] = encode(dm, v, f.type, proto)
    return out


def encode_untyped(value: Any, proto: str) -> Any:
    if isinstance(value, Lazy):
        return value.fn(proto)
    if isinstance(value, (bool, float, str)):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, _dt.datetime):
        return xmlrpc.client.DateTime(fmt_datetime(value)) if proto == XML else fmt_datetime(value)
    if isinstance(value, dict):
        return {_key(k): encode_untyped(v, proto) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [encode_untyped(v, proto) for v in value]
    if value is None:
        return ""
    return str(value)


# ----------------------------------------------------------------------------- decoding


class DecodeError(Exception):
    pass


def decode(dm: Datamodel, value: Any, t: Type) -> Any:
    """Protocol value -> python value; DecodeError on a type mismatch."""
    k = t.kind
    if k in ("string", "ref"):
        if isinstance(value, str):
            return value
        raise DecodeError
    if k == "enum":
        if not isinstance(value, str):
            raise DecodeError
        vals = dm.enums.get(t.name, ())
        for v in vals:  # xapi parses enums case-insensitively
            if v.lower() == value.lower():
                return v
        raise ApiError("INVALID_VALUE", value)
    if k == "int":
        if isinstance(value, bool):
            raise DecodeError
        if isinstance(value, int):
            return value
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                raise DecodeError from None
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise DecodeError
    if k == "float":
        if isinstance(value, bool):
            raise DecodeError
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                raise DecodeError from None
        raise DecodeError
    if k == "bool":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise DecodeError
    if k == "datetime":
        if isinstance(value, xmlrpc.client.DateTime):
            return parse_datetime(value.value)
        if isinstance(value, str):
            return parse_datetime(value)
        if isinstance(value, _dt.datetime):
            return value if value.tzinfo else value.replace(tzinfo=_dt.UTC)
        raise DecodeError
    if k == "set":
        if not isinstance(value, (list, tuple)):
            raise DecodeError
        return [decode(dm, v, t.elem) for v in value]  # type: ignore[arg-type]
    if k == "map":
        if not isinstance(value, dict):
            raise DecodeError
        return {decode(dm, kk, t.key): decode(dm, vv, t.elem) for kk, vv in value.items()}  # type: ignore[arg-type]
    if k == "record":
        if not isinstance(value, dict):
            raise DecodeError
        return value  # constructor handling decodes per field
    if k == "option":
        return decode(dm, value, t.elem)  # type: ignore[arg-type]
    return value


# ----------------------------------------------------------------------------- XML-RPC text

_XML_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;"})


def xml_value(v: Any) -> str:
    """One XML-RPC ``<value>`` as xapi's rpclib writes it: compact, strings untagged.

    Clients parse xapi's exact text (Xen Orchestra's parser keeps whitespace nodes), so
    no pretty-printing; xapi also stores task results in this form."""
    parts: list[str] = []
    _xml(v, parts)
    return "".join(parts)


def _xml(v: Any, out: list[str]) -> None:
    if isinstance(v, Lazy):
        v = v.fn(XML)
    if isinstance(v, str):
        out += ["<value>", v.translate(_XML_ESCAPES), "</value>"]
    elif isinstance(v, bool):
        out.append(f"<value><boolean>{int(v)}</boolean></value>")
    elif isinstance(v, int):
        out.append(f"<value><i4>{v}</i4></value>")
    elif isinstance(v, float):
        out.append(f"<value><double>{v!r}</double></value>")
    elif isinstance(v, xmlrpc.client.DateTime):
        out.append(f"<value><dateTime.iso8601>{v.value}</dateTime.iso8601></value>")
    elif isinstance(v, _dt.datetime):
        out.append(f"<value><dateTime.iso8601>{fmt_datetime(v)}</dateTime.iso8601></value>")
    elif isinstance(v, dict):
        out.append("<value><struct>")
        for k, x in v.items():
            out += ["<member><name>", _key(k).translate(_XML_ESCAPES), "</name>"]
            _xml(x, out)
            out.append("</member>")
        out.append("</struct></value>")
    elif isinstance(v, (list, tuple)):
        out.append("<value><array><data>")
        for x in v:
            _xml(x, out)
        out.append("</data></array></value>")
    elif v is None:
        out.append("<value><nil/></value>")
    else:
        _xml(str(v), out)


def xml_response(v: Any) -> bytes:
    """A methodResponse carrying ``v`` (xapi's envelope, byte for byte in form)."""
    return f'<?xml version="1.0"?><methodResponse><params><param>{xml_value(v)}</param></params></methodResponse>'.encode()
