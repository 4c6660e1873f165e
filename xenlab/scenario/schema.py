"""The JSON Schema of scenario files, as faithful to `model.Scenario` as a schema can be.

pydantic writes the shape of every model; what the models check by hand is added here:
a step has exactly one kind (and a wait, a condition, a checkpoint and an `until` exactly
one of their keys), a step's expectations name only figures its kind measures, each in the
form its unit takes (`< 2s` for a time, `<= 3` for a count, `ok` for a yes-or-no; one bound
per accelerator `{tcg: ..., kvm: ...}`), impairment parameters belong to impair faults.
What needs the whole file or a lab (guests used before they are created, faults healed
that were never struck, repeat limits, negative limits, the lab's hosts) is left to
`xenlab validate`, which editors cannot run.
"""

from __future__ import annotations

from typing import Any

from .expect import ACCEL_KEYS, NO, YES
from .model import FIGURES, IMPAIRMENT_PARAMS, KINDS, Scenario

NUMBER = r"\+?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)"  # expect._NUMBER without a sign that makes a limit negative
UNIT_OF = {"time": r"\s*(?:ms|s|min|m)", "%": r"\s*%", "count": ""}
DIMENSION_OF = {"s": "time", "count": "count", "bool": "bool", "%": "%"}


def _any_case(text: str) -> str:
    """`ok` -> `[Oo][Kk]`: ECMA regular expressions have no case-insensitive flag in a schema."""
    return "".join(f"[{c.upper()}{c.lower()}]" if c.isalpha() else (r"\s+" if c == " " else c) for c in text)


def _expectation_pattern(dimension: str) -> str:
    """What `expect.parse_expectation` reads for a figure of this dimension, as a pattern."""
    if dimension == "bool":
        words = "|".join(_any_case(w) for w in YES + NO)
        return rf"^\s*(?:{words})\s*$"
    quantity = NUMBER + UNIT_OF[dimension]
    compare = rf"(?:<=|>=|==|!=|<|>|=)\s*{quantity}"
    between = rf"{_any_case('between')}\s+{quantity}\s+{_any_case('and')}\s+{quantity}"
    return rf"^\s*(?:{compare}|{between}|{quantity})\s*$"


def _one_bound(dimension: str) -> dict[str, Any]:
    forms: list[dict[str, Any]] = [{"type": "string", "pattern": _expectation_pattern(dimension)}]
    if dimension == "bool":
        forms.append({"type": "boolean"})
    if dimension == "count":
        forms.append({"type": "number", "minimum": 0})
    return {"anyOf": forms}


def _expectation(dimension: str) -> dict[str, Any]:
    """One expectation of a figure of `dimension`, or one per accelerator."""
    bound = _one_bound(dimension)
    per_accel = {"type": "object", "minProperties": 1, "additionalProperties": False,
                 "properties": {key: bound for key in ACCEL_KEYS},
                 "description": "one bound per accelerator; `other`: any lab whose accelerator is not listed"}
    return {"anyOf": [*bound["anyOf"], per_accel],
            "description": {"time": "e.g. '< 2s', '<= 1500ms', 'between 1s and 3s'", "count": "e.g. '<= 3', 0",
                            "bool": "'ok' or 'not ok' (true, false)", "%": "e.g. '> 99%'"}[dimension]}


def _present(key: str) -> dict[str, Any]:
    return {"required": [key], "properties": {key: {"not": {"type": "null"}}}}


def _exactly_one(definition: dict[str, Any], keys: list[str]) -> None:
    """Exactly one of `keys` given (and not null), as the model's own check has it."""
    definition["oneOf"] = [_present(key) for key in keys]


def scenario_json_schema() -> dict[str, Any]:
    schema = Scenario.model_json_schema()
    defs = schema["$defs"]
    for dimension in ("time", "count", "bool"):
        defs[f"Expectation_{dimension}"] = _expectation(dimension)
    step = defs["Step"]
    step["properties"]["expect"] = {"type": "object", "description": "figure -> expectation; a step's kind says "
                                    "which figures it measures"}
    branches = []
    for kind in KINDS:
        key = "assert" if kind == "assert" else kind
        figures = {name: {"$ref": f"#/$defs/Expectation_{DIMENSION_OF[unit]}"} for name, unit in FIGURES[kind].items()}
        branch = _present(key)
        branch["properties"]["expect"] = {"properties": figures, "additionalProperties": False}
        branches.append(branch)
    step["oneOf"] = branches
    _exactly_one(defs["Condition"], list(defs["Condition"]["properties"]))
    _exactly_one(defs["Wait"], ["for", "until", "seconds"])
    _exactly_one(defs["Checkpoint"], ["save", "restore"])
    _exactly_one(defs["Until"], list(defs["Until"]["properties"]))
    fault = defs["FaultStep"]
    impaired = {"properties": {"kind": {"const": "impair"}}, "required": ["kind"]}
    fault["allOf"] = [
        {"if": impaired, "then": {"anyOf": [_present(p) for p in IMPAIRMENT_PARAMS]},
         "else": {"properties": {p: {"type": "null"} for p in IMPAIRMENT_PARAMS}}},
        {"if": {"properties": {"kind": {"enum": ["link_down", "impair", "partition"]}}, "required": ["kind"]},
         "else": {"properties": {"network": {"type": "null"}}}},
    ]
    defs["FormPool"]["properties"]["members"]["uniqueItems"] = True
    return schema
