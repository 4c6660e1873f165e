"""YAML loading that remembers where every value came from, so errors can name a line.

pydantic reports a location as a path of keys and indexes; `LocatedDocument.line_of`
turns such a path into the line of the nearest node that exists in the file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .errors import SpecError

Path_ = tuple[Any, ...]


@dataclass
class LocatedDocument:
    """Plain Python data plus the line (1-based) of every mapping key and list item."""

    path: str
    data: Any
    lines: dict[Path_, int] = field(default_factory=dict)

    def line_of(self, loc: Path_) -> int | None:
        """Line of the deepest existing prefix of `loc` (missing keys point at their parent)."""
        loc = tuple(loc)
        while True:
            if loc in self.lines:
                return self.lines[loc]
            if not loc:
                return None
            loc = loc[:-1]


class _Loader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys (a silent override hides a user mistake)."""


def _walk(node: yaml.Node, loc: Path_, lines: dict[Path_, int], path: str) -> Any:
    if isinstance(node, yaml.MappingNode):
        result: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                raise SpecError(path, [(key_node.start_mark.line + 1, "keys must be plain names")])
            key = _resolve_scalar(key_node)
            if key in result:
                raise SpecError(path, [(key_node.start_mark.line + 1, f"duplicate key {key!r}")])
            lines[loc + (key,)] = key_node.start_mark.line + 1
            result[key] = _walk(value_node, loc + (key,), lines, path)
        return result
    if isinstance(node, yaml.SequenceNode):
        items = []
        for index, item in enumerate(node.value):
            lines[loc + (index,)] = item.start_mark.line + 1
            items.append(_walk(item, loc + (index,), lines, path))
        return items
    return _resolve_scalar(node)


_CONSTRUCTOR = yaml.SafeLoader("")


def _resolve_scalar(node: yaml.Node) -> Any:
    return _CONSTRUCTOR.construct_object(node, deep=True)


def load_located(path: str | Path) -> LocatedDocument:
    """Read a YAML file into data and line numbers; syntax errors become SpecError."""
    path = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError(path, [(None, "file not found")]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(path, [(None, f"cannot read: {exc}")]) from None
    return parse_located(text, path)


def parse_located(text: str, path: str = "<string>") -> LocatedDocument:
    """Parse YAML text (one document) keeping line numbers; see `load_located`."""
    try:
        node = yaml.compose(text, Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        raise SpecError(path, [(line, f"YAML syntax error: {exc.problem or exc}")]) from None
    except yaml.YAMLError as exc:
        raise SpecError(path, [(None, f"YAML error: {exc}")]) from None
    if node is None:
        raise SpecError(path, [(1, "the file is empty")])
    lines: dict[Path_, int] = {(): node.start_mark.line + 1}
    try:
        data = _walk(node, (), lines, path)
    except yaml.constructor.ConstructorError as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark else None
        raise SpecError(path, [(line, str(exc.problem))]) from None
    return LocatedDocument(path, data, lines)
