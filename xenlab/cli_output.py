"""What every face of the `xenlab` command prints through: consoles that never wrap, errors
as plain text, and timed progress lines (shared by cli.py and the command groups beside it,
so none of them imports another)."""

from __future__ import annotations

import time

from rich.console import Console
from rich.markup import escape
from rich.text import Text

from .errors import SpecError
from .waiting import Progress


def _console(stderr: bool = False) -> Console:
    """A console that never wraps lines: a log reader or a CI page sees each message whole."""
    made = Console(stderr=stderr, highlight=False, soft_wrap=True)
    if not made.is_terminal:
        made.width = 100_000  # tables take the width of their content, not 80 columns
    return made


console = _console(stderr=True)
out = _console()


def print_error(exc: Exception) -> None:
    """An error as plain text: whatever a user's file holds (`[/red]`, `[key]`) is printed as it is."""
    message = Text("error:", style="red")
    message.append(" invalid file\n" if isinstance(exc, SpecError) else " ")
    message.append(str(exc))
    console.print(message)


def _timed_progress() -> Progress:
    """A progress callback that prints seconds since now, the subject and the message
    (text from files and hosts is escaped, never read as markup)."""
    started = time.monotonic()

    def progress(subject: str, message: str) -> None:
        console.print(f"[dim]{time.monotonic() - started:6.1f}s[/dim] [bold]{escape(subject)}[/bold] {escape(message)}")

    return progress
