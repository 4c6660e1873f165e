"""Errors that reach a user: they carry enough context to act on, never a traceback."""

from __future__ import annotations


class XenlabError(Exception):
    """A failure the user can understand and fix; the CLI prints it without a traceback."""


class InvalidInput(XenlabError):
    """Input refused before anything was started or written (the CLI exits 2)."""


class SpecError(InvalidInput):
    """A user file (lab, scenario, profile, results, history database) is invalid.

    Names the file, the line where there is one, what is wrong and what to write instead.
    """

    def __init__(self, path: str, problems: list[tuple[int | None, str]]):
        self.path = path
        self.problems = problems
        lines = []
        for line, message in problems:
            where = f"{path}:{line}" if line else path
            lines.append(f"{where}: {message}")
        super().__init__("\n".join(lines))


class NotMeasurable(XenlabError):
    """A figure this backend cannot measure (e.g. disk integrity on a simulator): reported, not failed."""


class WaitTimeout(XenlabError):
    """A wait ran past its deadline; the message says what was awaited and the last evidence."""


class CommandFailed(XenlabError):
    """A command on a lab host exited non-zero (or timed out)."""

    def __init__(self, host: str, command: str, status: int | None, stdout: str, stderr: str):
        self.host, self.command, self.status = host, command, status
        self.stdout, self.stderr = stdout, stderr
        tail = (stderr or stdout).strip().splitlines()[-5:]
        what = "timed out" if status is None else f"exited {status}"
        super().__init__(f"{host}: `{command}` {what}" + ("\n  " + "\n  ".join(tail) if tail else ""))
