"""Verbs on a host with a shell that read like a test: succeed, fail, wait until, copy.

The NixOS test driver made these the norm (`machine.wait_for_unit("sshd")`); here they
are one mixin that QEMU and static hosts share through `RemoteShell`, on top of its
`run`. Each verb is recorded as a `HostStep` (what was asked, how long it took, the
output's tail) and handed to whoever listens (`listening`): the pytest plugin nests
them under the test in JUnit and the HTML report. A wait polls with a deadline and fails
with the last output and, where the host has one, its console tail; never a bare sleep.
"""

from __future__ import annotations

import contextlib
import re
import shlex
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import CommandFailed, WaitTimeout, XenlabError
from ..waiting import wait_for

if TYPE_CHECKING:
    from .ssh import CommandResult

OUTPUT_TAIL_CHARS = 2000
DEFAULT_WAIT_S = 300.0


def unit_active_command(unit: str) -> str:
    """Succeeds while a systemd unit is active."""
    return f"systemctl is-active --quiet {shlex.quote(unit)}"


def port_open_command(port: int) -> str:
    """Succeeds while something listens on TCP `port` (state 0A), IPv4 or IPv6: /proc needs no nc or ss."""
    return (f"grep -qE '^ *[0-9]+: [0-9A-Fa-f]+:{port:04X} [0-9A-Fa-f]+:[0-9A-Fa-f]+ 0A ' "
            "/proc/net/tcp /proc/net/tcp6 2>/dev/null")


@dataclass(frozen=True)
class HostStep:
    """One verb done on a host, as a report shows it nested under the test."""

    host: str
    verb: str  # succeed, fail, wait_until_succeeds, wait_for_unit, copy_to_host, ...
    detail: str  # the command, unit, port, pattern or path
    started_at: float  # time.time()
    ended_at: float
    ok: bool
    output: str = ""  # the tail of what the command printed (or why it failed)

    @property
    def title(self) -> str:
        return f"{self.host}: {self.verb} {self.detail}"


_listeners: list[Callable[[HostStep], None]] = []
_listeners_lock = threading.Lock()


@contextlib.contextmanager
def listening(callback: Callable[[HostStep], None]) -> Iterator[None]:
    """Hand every host step done inside the block to `callback` (the plugin, per test)."""
    with _listeners_lock:
        _listeners.append(callback)
    try:
        yield
    finally:
        with _listeners_lock:
            _listeners.remove(callback)


def _asked_by_a_test(frames_up: int = 2) -> bool:
    """Whether the verb was called from outside xenlab (a test, a user's script): only those
    are steps of the test; xenlab's own uses (the xl driver's hundreds of commands) are not."""
    caller = sys._getframe(frames_up).f_globals.get("__name__", "")
    return not (caller == "xenlab" or caller.startswith("xenlab."))


def _tail(text: str) -> str:
    return text if len(text) <= OUTPUT_TAIL_CHARS else "..." + text[-OUTPUT_TAIL_CHARS:]


class HostVerbs:
    """The test verbs of a host with a shell; needs `name`, `run` and (for consoles) `serial_tail`."""

    name: str

    def run(self, command: str, timeout: float = 60, input: bytes | None = None) -> CommandResult:
        raise NotImplementedError

    # -- recording --------------------------------------------------------------------------
    @contextlib.contextmanager
    def _step(self, verb: str, detail: str, recorded: bool = True) -> Iterator[dict[str, Any]]:
        """Time the verb inside the block and hand its HostStep to the listeners, failed or not."""
        outcome: dict[str, Any] = {"ok": False, "output": ""}
        started = time.time()
        try:
            yield outcome
        except BaseException as exc:
            outcome["ok"], outcome["output"] = False, outcome["output"] or str(exc)
            raise
        finally:
            with _listeners_lock:
                listeners = list(_listeners) if recorded else []
            if listeners:
                step = HostStep(self.name, verb, detail, started, time.time(), bool(outcome["ok"]),
                                _tail(str(outcome["output"])))
                for listener in listeners:
                    listener(step)

    # -- commands ---------------------------------------------------------------------------
    def succeed(self, command: str, timeout: float = 60, input: bytes | None = None) -> str:
        """Run `command`; its stdout, or CommandFailed (with its output) if it exits non-zero."""
        with self._step("succeed", command, _asked_by_a_test()) as step:
            result = self.run(command, timeout=timeout, input=input)
            step["output"] = result.stdout + result.stderr
            if not result.ok:
                raise CommandFailed(self.name, command, result.status, result.stdout, result.stderr)
            step["ok"] = True
            return result.stdout

    def fail(self, command: str, timeout: float = 60) -> str:
        """Run `command` expecting a non-zero exit; its output (CommandFailed if it succeeded)."""
        with self._step("fail", command, _asked_by_a_test()) as step:
            result = self.run(command, timeout=timeout)
            step["output"] = result.stdout + result.stderr
            if result.ok:
                raise CommandFailed(self.name, command, 0, result.stdout, "expected a failure but it succeeded")
            step["ok"] = True
            return result.stdout + result.stderr

    def _wait_command(self, verb: str, detail: str, command: str, want_success: bool, timeout: float,
                      interval: float, recorded: bool) -> str:
        last: list[CommandResult | str] = [""]

        def holds() -> bool:
            try:
                result = self.run(command, timeout=max(5.0, min(60.0, timeout)))
            except XenlabError as exc:  # not answering yet (booting, sshd restarting): try again
                last[0] = str(exc)
                return False
            last[0] = result
            return result.ok == want_success

        def evidence() -> str:
            seen = last[0]
            text = seen if isinstance(seen, str) else f"exit {seen.status}: {seen.stdout}{seen.stderr}"
            return f"{self.name}: last try of `{command}`: {_tail(text)}" + self._console_evidence()

        with self._step(verb, detail, recorded) as step:
            try:
                wait_for(holds, f"{self.name}: {verb} {detail}", timeout, interval, evidence)
            except WaitTimeout as exc:
                step["output"] = str(exc)
                raise
            seen = last[0]
            step["output"] = "" if isinstance(seen, str) else seen.stdout + seen.stderr
            step["ok"] = True
            return "" if isinstance(seen, str) else seen.stdout

    def wait_until_succeeds(self, command: str, timeout: float = DEFAULT_WAIT_S, interval: float = 1.0) -> str:
        """Retry `command` until it exits 0 (its stdout), or WaitTimeout with its last output."""
        return self._wait_command("wait_until_succeeds", command, command, True, timeout, interval,
                                  _asked_by_a_test())

    def wait_until_fails(self, command: str, timeout: float = DEFAULT_WAIT_S, interval: float = 1.0) -> str:
        """Retry `command` until it exits non-zero."""
        return self._wait_command("wait_until_fails", command, command, False, timeout, interval,
                                  _asked_by_a_test())

    def wait_for_unit(self, unit: str, timeout: float = DEFAULT_WAIT_S) -> None:
        """Until the systemd unit is active (the evidence says its last state)."""
        self._wait_command("wait_for_unit", unit, unit_active_command(unit), True, timeout, 1.0, _asked_by_a_test())

    def wait_for_open_port(self, port: int, timeout: float = DEFAULT_WAIT_S) -> None:
        """Until something listens on TCP `port` on the host."""
        if not 0 < port < 65536:
            raise XenlabError(f"port {port} is not a TCP port (1-65535)")
        self._wait_command("wait_for_open_port", str(port), port_open_command(port), True, timeout, 1.0,
                           _asked_by_a_test())

    def wait_for_console_text(self, pattern: str, timeout: float = DEFAULT_WAIT_S) -> str:
        """Until the host's console (Xen and dom0 on its serial line) shows `pattern` (a regex); the match."""
        try:
            regex = re.compile(pattern)
        except re.error as exc:
            raise XenlabError(f"{pattern!r} is not a regular expression: {exc}") from None
        found: list[str] = []

        def shows() -> bool:
            match = regex.search(self.serial_tail(2000))
            if match:
                found.append(match.group(0))
            return match is not None

        with self._step("wait_for_console_text", pattern, _asked_by_a_test()) as step:
            wait_for(shows, f"{self.name}: console text {pattern!r}", timeout, 1.0,
                     lambda: f"{self.name}: last console lines:\n{self.serial_tail(15)}")
            step["ok"], step["output"] = True, found[0]
            return found[0]

    # -- files ------------------------------------------------------------------------------
    def copy_to_host(self, local: str | Path, remote: str) -> None:
        """Copy a local file onto the host (SFTP over its SSH connection)."""
        source = Path(local)
        if not source.is_file():
            raise XenlabError(f"copy_to_host: {source} is not a file")
        with self._step("copy_to_host", f"{source} -> {remote}", _asked_by_a_test()) as step:
            self._sftp(lambda sftp: sftp.put(str(source), remote))
            step["ok"], step["output"] = True, f"{source.stat().st_size} bytes"

    def copy_from_host(self, remote: str, local: str | Path) -> Path:
        """Copy a file from the host to `local` (a file path, or a directory to put it in)."""
        target = Path(local)
        if target.is_dir():
            target = target / Path(remote).name
        with self._step("copy_from_host", f"{remote} -> {target}", _asked_by_a_test()) as step:
            self._sftp(lambda sftp: sftp.get(remote, str(target)))
            step["ok"], step["output"] = True, f"{target.stat().st_size} bytes"
        return target

    def _sftp(self, action: Callable[[Any], Any]) -> None:
        sftp = self.ssh.client().open_sftp()  # type: ignore[attr-defined]
        try:
            action(sftp)
        except OSError as exc:
            raise XenlabError(f"{self.name}: {exc}") from None
        finally:
            sftp.close()

    def _console_evidence(self) -> str:
        try:
            return f"\n{self.name}: last console lines:\n{self.serial_tail(10)}"  # type: ignore[attr-defined]
        except XenlabError:
            return ""  # a host without a readable console (a real server)
