"""The scenario steps that act through a machine's shell: `run` a command and judge its exit
status and output, and `wait: until` a command succeeds, a unit is active or a port is open.

A mixin of the scenario runner (`runner._ScenarioRun`): it reaches a machine's shell
through the lab the runner was given (`shell_of`: a QEMU lab's hosts over SSH, a static
lab's hosts that have `ssh:`; a sim lab has none, and such a step is refused before the
run starts by `session.capability_problems`). What each command did (exit status, the
tail of its stdout and stderr, how long it took) is kept in the step's `details`, which
the HTML report shows beside the step.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from ..errors import CommandFailed, WaitTimeout, XenlabError
from ..results import Figure
from .commands import CommandExpect, short
from .failure import StepFailed
from .model import Step

TAIL_LINES = 20  # of stdout and of stderr kept in the results
TAIL_CHARS = 4000
ATTEMPT_TIMEOUT_S = 30.0  # one try of a `wait: until` command (the wait's timeout bounds them all)
MATCHED_CHARS = 1_000_000  # a regular expression reads at most this much of an output


class CommandOutput(Protocol):
    status: int
    stdout: str
    stderr: str


class Shell(Protocol):
    """What a machine with a shell offers (`lab.ssh.RemoteShell`): run a command line."""

    def run(self, command: str, timeout: float = 60, input: bytes | None = None) -> CommandOutput: ...


def shell_of(lab: object, host: str) -> Shell | None:
    """The shell of `host` in `lab`, or None where the lab has none there: a sim lab has no
    machines, a static xapi host may have no `ssh:`."""
    machines = getattr(lab, "machines", None) or {}
    machine = machines.get(host)
    if machine is None or not getattr(machine, "has_shell", True):
        return None
    return machine


def tail(text: str) -> str:
    """The last TAIL_LINES lines (at most TAIL_CHARS characters) of a command's output."""
    kept = "\n".join(text.rstrip("\n").splitlines()[-TAIL_LINES:])
    return kept[-TAIL_CHARS:]


@dataclass
class CommandRecord:
    """What one command did, as the results keep it (`details["command"]`)."""

    host: str
    command: str
    exit: int | None  # None: it did not finish in time (or the shell broke: see `error`)
    stdout_tail: str
    stderr_tail: str
    seconds: float
    error: str = ""  # the shell could not run it, or it ran past its time
    checks: list[dict[str, Any]] | None = None  # each expectation: {"check", "passed", "message"}
    attempts: int = 1  # a `wait: until` tries it until it succeeds

    def as_details(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}


def run_command(shell: Shell, host: str, command: str, timeout: float) -> tuple[CommandRecord, str, str]:
    """Run `command` on `shell`, never longer than `timeout`; the record and the whole stdout
    and stderr (the record keeps their tails). A broken shell raises XenlabError."""
    started = time.monotonic()
    try:
        result = shell.run(command, timeout=timeout)
    except CommandFailed as exc:  # it ran past its time: the channel was closed
        record = CommandRecord(host, command, exc.status, tail(exc.stdout), tail(exc.stderr),
                               round(time.monotonic() - started, 3), error=f"did not finish within {timeout:g} s")
        return record, exc.stdout, exc.stderr
    record = CommandRecord(host, command, result.status, tail(result.stdout), tail(result.stderr),
                           round(time.monotonic() - started, 3))
    return record, result.stdout, result.stderr


def judge(expect: CommandExpect, record: CommandRecord, stdout: str, stderr: str) -> list[dict[str, Any]]:
    """Each expectation of a `run` step against what the command did."""
    checks: list[dict[str, Any]] = []
    if record.exit is None:
        checks.append({"check": f"within {expect.within:g} s", "passed": False,
                       "message": f"it did not finish within {expect.within:g} s"})
        return checks
    checks.append({"check": expect.exit_text, "passed": expect.exit_ok(record.exit),
                   "message": f"exit {record.exit}"})
    for stream, pattern, text in (("stdout", expect.stdout, stdout), ("stderr", expect.stderr, stderr)):
        if pattern is not None:
            found = re.search(pattern, text[-MATCHED_CHARS:], re.MULTILINE) is not None
            checks.append({"check": f"{stream} matches {pattern!r}", "passed": found,
                           "message": f"{stream} {'matches' if found else 'does not match'} {pattern!r}"})
    return checks


class CommandSteps:
    """run steps, and waits until a shell condition holds; the runner provides the attributes below."""

    lab: Any
    info: Callable[[str, str], None]
    wait: Callable[[Callable[[], Any], str, float], Any]

    def shell(self, host: str) -> Shell:
        found = shell_of(self.lab, host)
        if found is None:  # refused before the run by session.capability_problems; a bare runner call lands here
            name = getattr(self.lab, "name", "this run")
            raise StepFailed(f"this step needs a shell on {host} (capability: shell), and lab {name} has none there",
                             "error")
        return found

    def do_run(self, step: Step, figures: dict, details: dict, substeps: list) -> str:
        a = step.run
        record, stdout, stderr = run_command(self.shell(a.host), a.host, a.command, a.expect.within)
        record.checks = judge(a.expect, record, stdout, stderr)
        details["command"] = record.as_details()
        figures["duration"] = Figure(value=record.seconds, unit="s", note="the command's run time")
        missed = [c["message"] + f" (expected {c['check']})" for c in record.checks if not c["passed"]]
        if missed:
            raise StepFailed(f"`{short(a.command)}` on {a.host}: " + "; ".join(missed)
                             + _last_line(record))
        return f"`{short(a.command)}` on {a.host}: exit {record.exit} in {record.seconds:.1f} s"

    def wait_until(self, step: Step, figures: dict, details: dict) -> str:
        """A `wait: until` step: try its command until it succeeds or the wait's timeout passes."""
        a = step.wait
        until = a.until
        assert until is not None
        shell = self.shell(until.host)
        command = until.shell_command()
        started = time.time()
        deadline = started + a.timeout
        last: list[CommandRecord] = []

        def holds() -> bool:
            timeout = max(1.0, min(ATTEMPT_TIMEOUT_S, deadline - time.time()))
            try:
                record, _, _ = run_command(shell, until.host, command, timeout)
            except XenlabError as exc:  # the machine does not answer yet (rebooting, its sshd not up)
                record = CommandRecord(until.host, command, None, "", "", 0.0, error=str(exc))
            record.attempts = (last[0].attempts + 1) if last else 1
            last[:] = [record]
            return record.exit == 0

        try:
            self.wait(holds, until.describe(), max(1.0, deadline - time.time()))
        except WaitTimeout:
            if last:
                details["command"] = last[0].as_details()
            raise StepFailed(f"{until.describe()}: not so after {a.timeout:g} s"
                             + (f" ({_evidence(last[0])})" if last else "")) from None
        details["command"] = last[0].as_details()
        met = time.time() - started
        figures["duration"] = Figure(value=round(met, 3), unit="s")
        return f"{until.describe()} after {met:.1f} s ({last[0].attempts} tries)"


def _evidence(record: CommandRecord) -> str:
    """The last try in a few words: its exit status or error, and its last line of output."""
    said = record.error or f"exit {record.exit}"
    return f"{record.attempts} tries; last: {said}" + _last_line(record)


def _last_line(record: CommandRecord) -> str:
    text = (record.stderr_tail or record.stdout_tail).strip()
    return f"; it said: {text.splitlines()[-1][:200]}" if text else ""
