"""The one safe YAML loader for every user file, remembering where each value came from.

Lab files, scenarios, qualification profiles and image recipes all come through here, so
every hostile or surprising input is refused in one place, with the file, the line and
what to write instead, before anything is started:

- size (`MAX_FILE_BYTES`), nesting (`MAX_DEPTH`) and alias expansion (`MAX_NODES`) are
  limited, each refused with the limit named: no billion laughs, no RecursionError;
- plain scalars are read by the YAML 1.2 core schema (`yes`, `on`, `1:30` and `2024-01-01`
  are text; only `true`/`false` are booleans); a leading-zero number (`01000`, octal in
  YAML 1.1) and non-finite numbers (`.nan`, `.inf`, `1e999`) are refused;
- tags other than the plain-data ones (`!!python/object...`, `!!binary`, `!custom`),
  merge keys (`<<`), duplicate keys and multi-document files are refused;
- bytes that are not UTF-8 and unclosed quotes are reported at the line where they are.

pydantic reports a location as a path of keys and indexes; `LocatedDocument.line_of`
turns such a path into the line of the nearest node that exists in the file.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import yaml

from .errors import SpecError

Path_ = tuple[Any, ...]

MAX_FILE_BYTES = 1024 * 1024  # a lab file is a few hundred bytes; a scenario a few KiB
MAX_DEPTH = 40  # nested mappings and lists, aliases expanded
MAX_NODES = 100_000  # values after alias expansion
MAX_NUMBER_DIGITS = 30

PLAIN = "tag:xenlab,2026:plain"  # a plain (unquoted, untagged) scalar, resolved by `_plain_value`
_YAML = "tag:yaml.org,2002:"
_STANDARD_SCALARS = {f"{_YAML}{t}" for t in ("str", "int", "float", "bool", "null")}
_MAP, _SEQ = f"{_YAML}map", f"{_YAML}seq"

# YAML 1.2 core schema
_NULL = re.compile(r"^(?:~|null|Null|NULL|)$")
_BOOL = re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$")
_INT = re.compile(r"^[-+]?[0-9]+$")
_OCT = re.compile(r"^0o[0-7]+$")
_HEX = re.compile(r"^0x[0-9a-fA-F]+$")
_FLOAT = re.compile(r"^[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?$")
_ANY = re.compile(r".*", re.DOTALL)
_SPECIAL_FLOAT = re.compile(r"^(?:[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$")


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
    """Composes nodes only (no construction), with every plain scalar tagged PLAIN and a depth limit."""

    yaml_implicit_resolvers: ClassVar = {None: [(PLAIN, _ANY)], "": [(PLAIN, _ANY)]}

    def __init__(self, stream: str):
        super().__init__(stream)
        self.depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        self.depth += 1
        try:
            if self.depth > MAX_DEPTH:
                mark = self.peek_event().start_mark
                raise _Refused(mark.line + 1, f"nested more than {MAX_DEPTH} levels deep (the limit): "
                                              "flatten the structure")
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


class _Refused(Exception):
    def __init__(self, line: int | None, message: str):
        super().__init__(message)
        self.line, self.message = line, message


def _line(node: yaml.Node) -> int:
    return node.start_mark.line + 1


def _check_expansion(root: yaml.Node) -> None:
    """Refuse recursive aliases, and documents whose aliases expand past MAX_NODES or MAX_DEPTH.

    Iterative and memoized on node identity: a billion-laughs file is measured, never expanded.
    """
    size: dict[int, int] = {}
    depth: dict[int, int] = {}
    on_path: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        if children_done:
            on_path.discard(key)
            kids = _children(node)
            size[key] = 1 + sum(size[id(k)] for k in kids)
            depth[key] = 1 + max((depth[id(k)] for k in kids), default=0)
            if size[key] > MAX_NODES:
                raise _Refused(_line(node), f"aliases expand this to more than {MAX_NODES} values (the limit): "
                                            "write the values out instead of nesting aliases")
            if depth[key] > MAX_DEPTH:
                raise _Refused(_line(node), f"aliases nest this more than {MAX_DEPTH} levels deep (the limit)")
            continue
        if key in size:
            continue
        on_path.add(key)
        stack.append((node, True))
        for kid in _children(node):
            if id(kid) in on_path:
                raise _Refused(_line(kid), "recursive alias: an anchor is used inside itself; write the value out")
            if id(kid) not in size:
                stack.append((kid, False))


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def _show_tag(tag: str) -> str:
    return "!!" + tag.removeprefix(_YAML) if tag.startswith(_YAML) else tag


def _walk(root: yaml.Node, lines: dict[Path_, int]) -> Any:
    """Nodes to plain data (dicts, lists, str, int, float, bool, None), refusing what is not plain data."""

    def walk(node: yaml.Node, loc: Path_) -> Any:
        if isinstance(node, yaml.MappingNode):
            if node.tag != _MAP:
                raise _Refused(_line(node), _tag_message(node.tag))
            result: dict[Any, Any] = {}
            for key_node, value_node in node.value:
                if not isinstance(key_node, yaml.ScalarNode):
                    raise _Refused(_line(key_node), "keys must be plain names, not lists or mappings")
                if key_node.tag == PLAIN and key_node.value == "<<":
                    raise _Refused(_line(key_node), "merge keys (<<) are not supported: write the keys out")
                key = _scalar(key_node)
                if isinstance(key, bool | float) or key is None:
                    key = key_node.value  # `true:`, `1.5:`, `null:` as keys mean their text
                if key in result:
                    raise _Refused(_line(key_node), f"duplicate key {key!r}: each key may appear once")
                lines[loc + (key,)] = _line(key_node)
                result[key] = walk(value_node, loc + (key,))
            return result
        if isinstance(node, yaml.SequenceNode):
            if node.tag != _SEQ:
                raise _Refused(_line(node), _tag_message(node.tag))
            items = []
            for index, item in enumerate(node.value):
                lines[loc + (index,)] = _line(item)
                items.append(walk(item, loc + (index,)))
            return items
        return _scalar(node)

    return walk(root, ())


def _tag_message(tag: str) -> str:
    return (f"tag {_show_tag(tag)} is not allowed: xenlab files hold plain data only (mappings, lists, text, "
            "numbers, true/false); remove the tag")


def _scalar(node: yaml.ScalarNode) -> Any:
    value = node.value
    if node.tag == PLAIN:
        return _plain_value(value, _line(node))
    if node.tag not in _STANDARD_SCALARS:
        raise _Refused(_line(node), _tag_message(node.tag))
    kind = node.tag.removeprefix(_YAML)
    if kind == "str":
        return value
    parsed = _plain_value(value, _line(node))
    wanted = {"int": int, "float": (int, float), "bool": bool, "null": type(None)}[kind]
    if not isinstance(parsed, wanted) or (kind == "int" and isinstance(parsed, bool)):
        raise _Refused(_line(node), f"{value!r} is not a valid !!{kind}")
    return float(parsed) if kind == "float" else parsed


def _plain_value(text: str, line: int) -> Any:
    """A plain scalar by the YAML 1.2 core schema, refusing what YAML 1.1 would read otherwise."""
    if _NULL.match(text):
        return None
    if _BOOL.match(text):
        return text.lower() == "true"
    if _INT.match(text):
        digits = text.lstrip("+-")
        if len(digits) > 1 and digits.startswith("0"):
            plain = text[0] * (text[0] in "+-") + (digits.lstrip("0") or "0")
            raise _Refused(line, (f"{text} has a leading zero (octal in YAML 1.1, decimal in YAML 1.2): write "
                                  f"{plain}, or quote it ('{text}') if it is text"))
        if len(digits) > MAX_NUMBER_DIGITS:
            raise _Refused(line, f"a number of {len(digits)} digits is too long (the limit is {MAX_NUMBER_DIGITS})")
        return int(text)
    if _OCT.match(text) or _HEX.match(text):
        if len(text) > MAX_NUMBER_DIGITS:
            raise _Refused(line, f"{text[:20]}...: too long a number (the limit is {MAX_NUMBER_DIGITS} digits)")
        return int(text[2:], 8 if text[1] == "o" else 16)
    if _SPECIAL_FLOAT.match(text) or _FLOAT.match(text):
        if len(text) > MAX_NUMBER_DIGITS + 10:
            raise _Refused(line, f"{text[:20]}...: too long a number (the limit is {MAX_NUMBER_DIGITS} digits)")
        number = float(text.replace(".inf", "inf").replace(".Inf", "inf").replace(".INF", "inf")
                       .replace(".nan", "nan").replace(".NaN", "nan").replace(".NAN", "nan"))
        if not math.isfinite(number):
            raise _Refused(line, f"{text} is not a finite number: write an ordinary number")
        return number
    return text


def load_located(path: str | Path) -> LocatedDocument:
    """Read a YAML file (at most MAX_FILE_BYTES, UTF-8) into data and line numbers, or a SpecError."""
    path = str(path)
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        raise SpecError(path, [(None, "file not found")]) from None
    except IsADirectoryError:
        raise SpecError(path, [(None, "is a directory, not a file")]) from None
    except OSError as exc:
        raise SpecError(path, [(None, f"cannot read: {exc.strerror or exc}")]) from None
    if len(raw) > MAX_FILE_BYTES:
        raise SpecError(path, [(None, (f"the file is larger than {MAX_FILE_BYTES // 1024} KiB (the limit for a "
                                      "xenlab file): is it the right file?"))])
    return parse_located(decode_utf8(raw, path), path)


def decode_utf8(raw: bytes, path: str) -> str:
    """Bytes to text; bytes that are not UTF-8 are a SpecError naming their line and column."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line_start = raw.rfind(b"\n", 0, exc.start) + 1
        line = raw.count(b"\n", 0, exc.start) + 1
        column = exc.start - line_start + 1
        raise SpecError(path, [(line, (f"byte 0x{raw[exc.start]:02x} at column {column} is not UTF-8: save the "
                                      "file as UTF-8"))]) from None


def parse_located(text: str, path: str = "<string>") -> LocatedDocument:
    """Parse YAML text (one document) keeping line numbers; see `load_located`."""
    if len(text) > MAX_FILE_BYTES:
        raise SpecError(path, [(None, f"the text is larger than {MAX_FILE_BYTES // 1024} KiB (the limit)")])
    loader = None
    try:
        loader = _Loader(text)
        node = loader.get_single_node()
        if node is None:
            raise SpecError(path, [(1, "the file is empty: write the file's keys (see the README)")])
        _check_expansion(node)
        lines: dict[Path_, int] = {(): _line(node)}
        data = _walk(node, lines)
    except _Refused as exc:
        raise SpecError(path, [(exc.line, exc.message)]) from None
    except yaml.reader.ReaderError as exc:
        line = text.count("\n", 0, exc.position) + 1
        raise SpecError(path, [(line, (f"character #x{exc.character:04x} is not allowed in YAML (a control "
                                      "character): remove it"))]) from None
    except yaml.MarkedYAMLError as exc:
        raise SpecError(path, [_syntax_problem(exc)]) from None
    except yaml.YAMLError as exc:
        raise SpecError(path, [(None, f"YAML error: {exc}")]) from None
    finally:
        if loader is not None:
            loader.dispose()
    return LocatedDocument(path, data, lines)


def _syntax_problem(exc: yaml.MarkedYAMLError) -> tuple[int | None, str]:
    context = exc.context or ""
    problem = exc.problem or str(exc)
    if "quoted scalar" in context and exc.context_mark is not None and "end of stream" in problem:
        return exc.context_mark.line + 1, "this quoted text is never closed: add the closing quote"
    if "single document" in context and exc.problem_mark is not None:
        return exc.problem_mark.line + 1, ("a second YAML document starts here: a xenlab file is one document; "
                                           "remove the `---` (or split the file)")
    mark = exc.problem_mark or exc.context_mark
    where = ""
    if exc.context_mark is not None and exc.problem_mark is not None and exc.context_mark.line != exc.problem_mark.line:
        where = f" ({context} at line {exc.context_mark.line + 1})"
    return (mark.line + 1 if mark else None), f"YAML syntax error: {problem}{where}"
