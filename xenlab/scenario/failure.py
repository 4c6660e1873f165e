"""How a scenario step says it did not do what it should (raised by every kind of step)."""

from __future__ import annotations

from ..results import Outcome


class StepFailed(Exception):
    """The step did not do what it should; `outcome` is "failed" or "error"."""

    def __init__(self, message: str, outcome: Outcome = "failed"):
        super().__init__(message)
        self.outcome = outcome
