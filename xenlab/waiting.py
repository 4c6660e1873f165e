"""Polling waits that always say what they wait for and fail with the last evidence."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from .errors import WaitTimeout

T = TypeVar("T")
Progress = Callable[[str, str], None]  # (subject, message): how long work tells what it is doing


def quiet(subject: str, message: str) -> None:
    """A Progress that tells no one."""


class StopWaiting(Exception):
    """Raised by a predicate when waiting longer is pointless (the process died, a panic)."""


def wait_for(
    predicate: Callable[[], T],
    what: str,
    timeout: float,
    interval: float = 0.5,
    evidence: Callable[[], str] | None = None,
) -> T:
    """Poll `predicate` until it returns a truthy value, which is returned.

    Exceptions raised by the predicate count as "not yet" and are kept as evidence; on
    timeout a WaitTimeout names `what`, the time waited and `evidence()` (e.g. serial lines).
    """
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while True:
        try:
            value = predicate()
            if value:
                return value
        except StopWaiting as exc:
            parts = [f"gave up waiting for {what}: {exc}"]
            if evidence is not None:
                parts.append("last evidence:\n" + evidence().rstrip())
            raise WaitTimeout("\n".join(parts)) from None
        except Exception as exc:  # noqa: BLE001 - any failure is "not ready yet"
            last_error = exc
        if time.monotonic() >= deadline:
            break
        time.sleep(interval)
    parts = [f"timed out after {timeout:.0f}s waiting for {what}"]
    if last_error is not None:
        parts.append(f"last error: {type(last_error).__name__}: {last_error}")
    if evidence is not None:
        try:
            text = evidence().rstrip()
        except Exception as exc:  # noqa: BLE001
            text = f"(evidence unavailable: {exc})"
        if text:
            parts.append("last evidence:\n" + text)
    raise WaitTimeout("\n".join(parts))
