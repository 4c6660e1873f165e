"""Validated input files: pydantic models that refuse unknown keys and convert nothing, and
their errors turned into problems with the line of the YAML file they come from, each a
sentence that says what to write instead (lab files, scenarios, image recipes, profiles and
matrices all go through `validate_document`)."""

from __future__ import annotations

import json
import re
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from .errors import SpecError
from .yamlfile import LocatedDocument


class StrictModel(BaseModel):
    """Every spec model refuses unknown keys and converts nothing: a typo or a `yes` where a
    number belongs must not be silently read as something else (YAML gives real types)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


YAML11_BOOLEANS = {"yes", "no", "on", "off", "y", "n"}
_SEXAGESIMAL = re.compile(r"^[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+(?:\.[0-9_]*)?$")
_TYPE_TAG = re.compile(r"^(?:str|int|float|bool|none|list\[.*\]|dict\[.*\]|tuple\[.*\]|constrained-.*|function-.*"
                       r"|literal\[.*\]|is-instance\[.*\]|[A-Z][A-Za-z]+)$")


def _where(loc: tuple[Any, ...]) -> str:
    return ".".join(str(p) for p in loc)


def _message(error: dict[str, Any]) -> str:
    """One pydantic error as a sentence that says what is wrong and what to write instead."""
    loc = error["loc"]
    where = _where(loc)
    kind, value = error["type"], error.get("input")
    msg = error["msg"].removeprefix("Value error, ")
    if kind == "extra_forbidden":
        return f"unknown key {loc[-1]!r}" + (f" in {_where(loc[:-1])}" if len(loc) > 1 else "")
    if kind == "missing":
        return f"missing required key {where!r}"
    if kind == "string_pattern_mismatch":
        return (f"{where}: {value!r} is not a valid name (lowercase letters, digits and '-', starting with a letter, "
                "at most 24)")
    hint = _type_hint(kind, value, msg)
    if hint:
        return f"{where}: {hint}" if where else hint
    return f"{where}: {msg}" if where else msg


def _type_hint(kind: str, value: Any, msg: str) -> str:
    """What to write when YAML gave a value of the wrong type (xenlab converts nothing)."""
    shown = repr(value) if isinstance(value, str) else json.dumps(value) if isinstance(value, bool | None) else repr(value)
    yaml11 = isinstance(value, str) and value.lower() in YAML11_BOOLEANS
    if kind in ("int_type", "int_parsing"):
        if yaml11:
            return (f"{shown} is text, not a number (YAML 1.1 read it as a boolean; xenlab reads YAML 1.2): "
                    "write a whole number such as 2")
        if isinstance(value, str) and re.fullmatch(r"\s*[-+]?[0-9]+\s*", value):
            return f"{shown} is quoted, which makes it text: write {value.strip()} without quotes"
        return f"{shown} is not a whole number: write one such as 2"
    if kind in ("float_type", "float_parsing"):
        if isinstance(value, str) and _SEXAGESIMAL.match(value):
            return (f"{shown} is text, not a number (YAML 1.1 read it as base 60; xenlab reads YAML 1.2): write "
                    "plain seconds such as 90")
        if isinstance(value, str) and re.fullmatch(r"\s*[-+]?[0-9.]+\s*", value):
            return f"{shown} is quoted, which makes it text: write {value.strip()} without quotes"
        return f"{shown} is not a number: write one such as 30"
    if kind in ("bool_type", "bool_parsing"):
        if yaml11:
            return f"{shown} is text in YAML 1.2 (xenlab's YAML): write true or false"
        return f"{shown} is not true or false: write true or false"
    if kind == "string_type" and isinstance(value, bool | int | float):
        return f"{shown} is a {'boolean' if isinstance(value, bool) else 'number'}, not text: quote it (\"{shown}\")"
    if kind == "finite_number":
        return f"{shown} is not a finite number: write an ordinary number"
    if kind in ("dict_type", "model_type", "model_attributes_type"):
        return f"expected a mapping of keys here, not {_kind_of(value)}"
    if kind == "literal_error":
        return f"{shown} is not allowed here: " + msg.replace("Input should be", "write")
    if kind == "list_type":
        return f"expected a list here (e.g. [a, b]), not {_kind_of(value)}"
    return ""


def _kind_of(value: Any) -> str:
    if value is None:
        return "nothing"
    return {dict: "a mapping", list: "a list", str: f"the text {value!r}", bool: f"{json.dumps(value)}"}.get(
        type(value), f"the number {value!r}")


def _clean_loc(loc: tuple[Any, ...], doc: LocatedDocument) -> tuple[tuple[Any, ...], bool]:
    """pydantic's error path without its type tags (`str`, `list[...]`, `function-after[...]`, `[key]`).

    Returns the path as written in the YAML, and whether the error is about a mapping key.
    """
    cleaned: list[Any] = []
    about_key = False
    for part in loc:
        if part == "[key]":
            about_key = True
            continue
        candidate = tuple(cleaned) + (part,)
        if isinstance(part, str) and candidate not in doc.lines and _TYPE_TAG.match(part):
            continue
        cleaned.append(part)
    return tuple(cleaned), about_key


def require_mapping(doc: LocatedDocument) -> None:
    """Every xenlab file is a mapping of keys at its top level; SpecError otherwise."""
    if not isinstance(doc.data, dict):
        raise SpecError(doc.path, [(doc.line_of(()), (f"the top level is {_kind_of(doc.data)}, not a mapping of keys: "
                                                       "write the file's keys (such as `name:`) at the top level"))])


def validate_document(model: type[StrictModel], doc: LocatedDocument) -> Any:
    """Validate located YAML data against a model; all problems reported with lines."""
    require_mapping(doc)
    try:
        spec = model.model_validate(doc.data)
    except ValidationError as exc:
        problems = []
        for error in exc.errors(include_url=False):
            loc, about_key = _clean_loc(error["loc"], doc)
            message = _message({**error, "loc": loc})
            if about_key:
                message = f"{_where(loc[:-1]) or 'key'}: the key " + message.removeprefix(f"{_where(loc)}: ")
            problem = (doc.line_of(loc), message)
            if problem not in problems:
                problems.append(problem)
        raise SpecError(doc.path, problems) from None
    cross_check = getattr(spec, "cross_check", None)
    if cross_check is not None:
        found = cross_check()
        if found:
            raise SpecError(doc.path, [(doc.line_of(loc), msg) for loc, msg in found])
    return spec
