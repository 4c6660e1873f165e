"""The resume state of a qualification run: DIR/qualify-state.json, rewritten after every check.

`--resume` skips the checks it holds, but only for the same profile (by content digest)
on the same lab: a state from another profile or lab is refused, never mixed in.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..errors import SpecError, XenlabError
from ..results import HostInventory
from .model import CheckOutcome

STATE_SCHEMA = "xenlab.qualify-state/1"
STATE_FILE = "qualify-state.json"


class QualifyState(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    schema_: str = Field(STATE_SCHEMA, alias="schema")
    profile_digest: str
    lab: str
    started_at: float
    inventory: list[HostInventory] = Field(default_factory=list)
    checks: list[CheckOutcome] = Field(default_factory=list)
    phase_seconds: dict[str, float] = Field(default_factory=dict)  # summed over resumed runs

    def done(self) -> set[str]:
        return {c.id for c in self.checks}

    def record(self, outcome: CheckOutcome) -> None:
        self.checks = [c for c in self.checks if c.id != outcome.id] + [outcome]


def profile_digest(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def save_state(state: QualifyState, out_dir: Path) -> Path:
    """Written to a temporary file and renamed: a crash never leaves half a state."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / STATE_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(state.model_dump_json(by_alias=True, indent=2))
    os.replace(tmp, path)
    return path


def load_state(out_dir: Path, digest: str, lab: str) -> QualifyState | None:
    """The state to resume from (None when DIR has none); refused when it is not this run's."""
    path = out_dir / STATE_FILE
    if not path.exists():
        return None
    try:
        state = QualifyState.model_validate(json.loads(path.read_text()))
    except (ValueError, ValidationError) as exc:
        first = str(exc).splitlines()[0]
        raise SpecError(str(path), [(None, f"not a qualify state file ({first}): remove it or choose another --out")]
                        ) from None
    if state.profile_digest != digest:
        raise XenlabError(f"{path} was written for another profile (or the profile changed): "
                          "run without --resume, or choose another --out")
    if state.lab != lab:
        raise XenlabError(f"{path} was written for lab {state.lab}, not {lab}: run without --resume, "
                          "or choose another --out")
    return state
