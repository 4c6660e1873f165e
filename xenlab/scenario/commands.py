"""Scenario steps that run commands on a lab machine's shell, as validated models.

    - run: {host: h1, command: "xl info", expect: {exit: 0, stdout: "xen_major", within: 30s}}
    - wait: {until: {command_succeeds: {host: h1, command: "test -e /run/ready"}}, timeout: 60}
    - wait: {until: {unit_active: {host: h1, unit: xenstored.service}}}
    - wait: {until: {port_open: {host: services, port: 2049}}}

Everything that can be checked before a lab is touched is checked here (regular
expressions compile, durations read, unit names and ports are possible ones), so a bad
step is refused with its file and line; host names are checked against the lab
(`model.check_against_lab`) and the lab's shell on that host before anything starts
(`session.capability_problems`). Running them is `command_steps.CommandSteps`' job.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import BeforeValidator, Field, PlainValidator, WithJsonSchema, field_validator, model_validator

from ..lab.verbs import port_open_command, unit_active_command
from ..spec import Name
from ..validation import StrictModel
from .expect import TIME_UNITS

MAX_COMMAND = 4096  # characters of one command line
MAX_WITHIN_S = 3600.0
DURATION_TEXT = re.compile(r"^\s*((?:\d+(?:\.\d*)?|\.\d+))\s*(ms|s|min|m)\s*$")
UNIT_PATTERN = r"^[A-Za-z0-9:_.@\\-]{1,255}$"  # systemd unit names (systemd.unit(5))


def parse_duration(raw: object) -> object:
    """`30s`, `500ms`, `2m` or a number of seconds -> seconds (what pydantic then checks)."""
    if isinstance(raw, str):
        match = DURATION_TEXT.match(raw)
        if not match:
            raise ValueError(f"{raw!r} is not a duration: write seconds such as 30, or '30s', '500ms', '2m'")
        return float(match.group(1)) * TIME_UNITS[match.group(2)]
    if isinstance(raw, int) and not isinstance(raw, bool):
        return float(raw)
    return raw


DURATION_SCHEMA = {"anyOf": [{"type": "number", "exclusiveMinimum": 0, "maximum": MAX_WITHIN_S},
                             {"type": "string", "pattern": DURATION_TEXT.pattern}],
                   "description": "seconds, or a duration such as '30s', '500ms', '2m'"}
Duration = Annotated[float, Field(gt=0, le=MAX_WITHIN_S), BeforeValidator(parse_duration),
                     WithJsonSchema(DURATION_SCHEMA)]


def _regex(value: str | None) -> str | None:
    if value is not None:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"{value!r} is not a regular expression: {exc}") from None
    return value


def _exit_status(raw: object) -> int | str:
    if isinstance(raw, int) and not isinstance(raw, bool) and 0 <= raw <= 255:
        return raw
    if raw in ("nonzero", "any"):
        return raw  # type: ignore[return-value]
    raise ValueError(f"{raw!r} is not an exit status: write a number from 0 to 255, `nonzero` or `any`")


ExitStatus = Annotated[int | str, PlainValidator(_exit_status),
                       WithJsonSchema({"anyOf": [{"type": "integer", "minimum": 0, "maximum": 255},
                                                 {"enum": ["nonzero", "any"]}]})]


def _command(value: str) -> str:
    if "\x00" in value:
        raise ValueError("a command cannot hold a NUL character")
    if not value.strip():
        raise ValueError("the command is empty: write the command line to run")
    return value


class CommandExpect(StrictModel):
    """What a command must do: its exit status, text its output must contain, how long it may take."""

    exit: ExitStatus = Field(0, description="the exit status 0-255, `nonzero` or `any` (default 0)")
    stdout: str | None = Field(None, max_length=1000, description="a regular expression found in its stdout")
    stderr: str | None = Field(None, max_length=1000, description="a regular expression found in its stderr")
    within: Duration = Field(60.0, description="how long it may run (it is stopped then, and the step fails)")

    @field_validator("stdout", "stderr")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        return _regex(value)

    def exit_ok(self, status: int) -> bool:
        if self.exit == "any":
            return True
        if self.exit == "nonzero":
            return status != 0
        return status == self.exit

    @property
    def exit_text(self) -> str:
        return {"any": "any exit status", "nonzero": "a nonzero exit status"}.get(str(self.exit), f"exit {self.exit}")


class RunCommand(StrictModel):
    """`run:` a command on a machine's shell, and judge what it did."""

    host: Name = Field(description="a host or the services node of the lab")
    command: str = Field(min_length=1, max_length=MAX_COMMAND, description="a shell command line")
    expect: CommandExpect = Field(default_factory=CommandExpect)

    @field_validator("command")
    @classmethod
    def _printable(cls, value: str) -> str:
        return _command(value)


class CommandOn(StrictModel):
    host: Name
    command: str = Field(min_length=1, max_length=MAX_COMMAND)

    @field_validator("command")
    @classmethod
    def _printable(cls, value: str) -> str:
        return _command(value)


class UnitOn(StrictModel):
    host: Name
    unit: str = Field(description="a systemd unit, e.g. xenstored.service", json_schema_extra={"pattern": UNIT_PATTERN})

    @field_validator("unit")
    @classmethod
    def _unit_name(cls, value: str) -> str:
        if not re.fullmatch(UNIT_PATTERN, value):
            raise ValueError(f"{value!r} is not a systemd unit name (letters, digits and :_.@\\-, such as "
                             "xenstored.service)")
        return value


class PortOn(StrictModel):
    host: Name
    port: int = Field(ge=1, le=65535, description="a TCP port something listens on, on that machine")


class Until(StrictModel):
    """A fact about a machine, checked through its shell until it holds; exactly one key."""

    command_succeeds: CommandOn | None = None
    unit_active: UnitOn | None = None
    port_open: PortOn | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> Until:
        given = [k for k in type(self).model_fields if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"`until` has exactly one of {', '.join(type(self).model_fields)}"
                             + (f" (got {', '.join(given)})" if given else ""))
        return self

    @property
    def kind(self) -> str:
        return next(k for k in type(self).model_fields if getattr(self, k) is not None)

    @property
    def target(self) -> Any:
        return getattr(self, self.kind)

    @property
    def host(self) -> str:
        return self.target.host

    def shell_command(self) -> str:
        """The command whose success means the fact holds (busybox and systemd dom0s alike)."""
        t = self.target
        if isinstance(t, CommandOn):
            return t.command
        if isinstance(t, UnitOn):
            return unit_active_command(t.unit)
        return port_open_command(t.port)  # the same checks as the hosts' wait_for_unit / wait_for_open_port

    def describe(self) -> str:
        t = self.target
        if isinstance(t, CommandOn):
            return f"`{short(t.command)}` succeeds on {t.host}"
        if isinstance(t, UnitOn):
            return f"{t.unit} active on {t.host}"
        return f"port {t.port} open on {t.host}"


def short(command: str, width: int = 60) -> str:
    """A command as a title shows it: one line, at most `width` characters."""
    line = " ".join(command.split())
    return line if len(line) <= width else line[: width - 1] + "…"
