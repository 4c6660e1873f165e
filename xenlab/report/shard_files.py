"""What a shard writes beside its reports: `shard.json`, its identity and what its plan gave it.

Written when the shard starts (`finished: false`) and again when it ends, so `xenlab report
merge` can tell a shard that broke off from one that never started, and an item the plan
gave a shard from one it lost. The identity (run id, K/N, machine) is what merge checks for
completeness and refuses twice.
"""

from __future__ import annotations

import json
import os
import re
import socket
import time
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..errors import SpecError
from ..shards import MACHINE_PATTERN, RUN_ID_PATTERN, Shard, ShardRef, check_machine, check_run_id

MANIFEST_NAME = "shard.json"
MANIFEST_SCHEMA = "xenlab.shard/1"
MAX_MANIFEST_BYTES = 16 * 1024 * 1024
RUN_ID_ENV, MACHINE_ENV = "XENLAB_RUN_ID", "XENLAB_MACHINE"


class ShardManifest(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    schema_: Literal["xenlab.shard/1"] = Field(MANIFEST_SCHEMA, alias="schema")
    kind: Literal["pytest", "matrix"]
    run_id: str = Field(pattern=RUN_ID_PATTERN.pattern)
    index: int = Field(ge=1)
    count: int = Field(ge=1, le=1000)
    machine: str = Field(pattern=MACHINE_PATTERN.pattern)
    groups: list[str] = Field(default_factory=list)
    items: list[str] = Field(default_factory=list)  # what the plan gave this shard
    plan_order: list[str] = Field(default_factory=list)  # every item of the run, in the suite's order
    expected_s: float = Field(0.0, ge=0)
    started_at: float = Field(default_factory=time.time)
    ended_at: float | None = None
    finished: bool = False
    exit_status: int | None = None  # pytest's or xenlab's own, when it finished
    outcomes: dict[str, str] = Field(default_factory=dict)  # item -> its outcome, as the shard saw it end

    @property
    def ref(self) -> ShardRef:
        return ShardRef(self.index, self.count)

    @property
    def label(self) -> str:
        return str(self.ref)


def identity(run_id: str | None, machine: str | None, fallback_run_id: str) -> tuple[str, str]:
    """(run id, machine): given, else $XENLAB_RUN_ID / $XENLAB_MACHINE, else the plan's digest
    and this machine's host name."""
    run = run_id or os.environ.get(RUN_ID_ENV) or fallback_run_id
    own = re.sub(r"[^A-Za-z0-9._-]", "-", socket.gethostname().split(".")[0]).strip("-._")[:128]
    host = machine or os.environ.get(MACHINE_ENV) or own or "localhost"
    return check_run_id(run), check_machine(host)


def new_manifest(kind: Literal["pytest", "matrix"], shard: Shard, run_id: str, machine: str,
                 plan_order: list[str]) -> ShardManifest:
    return ShardManifest(kind=kind, run_id=run_id, index=shard.ref.index, count=shard.ref.count, machine=machine,
                         groups=[g.name for g in shard.groups], items=[i.name for i in shard.items],
                         plan_order=plan_order, expected_s=round(shard.seconds, 1))


def write_manifest(manifest: ShardManifest, out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / MANIFEST_NAME
    path.write_text(manifest.model_dump_json(by_alias=True, indent=2) + "\n", encoding="utf-8")
    return path


def finish_manifest(manifest: ShardManifest, out_dir: Path, exit_status: int, outcomes: dict[str, str]) -> Path:
    done = manifest.model_copy(update={"finished": True, "ended_at": time.time(), "exit_status": int(exit_status),
                                       "outcomes": dict(outcomes)})
    return write_manifest(done, out_dir)


def read_manifest(directory: Path) -> ShardManifest:
    """A shard directory's manifest; a directory without one, or a broken one, is refused (SpecError)."""
    path = Path(directory) / MANIFEST_NAME
    where = str(path)
    if not Path(directory).is_dir():
        raise SpecError(str(directory), [(None, ("is not a directory: give the directory a shard wrote its reports "
                                                 "into (pytest --xenlab-report DIR, xenlab qualify --out DIR)"))])
    if not path.is_file():
        raise SpecError(where, [(None, ("no shard manifest: this directory was not written by a shard (pytest "
                                        "--xenlab-shard K/N --xenlab-report DIR, or xenlab qualify --shard K/N)"))])
    raw = path.read_bytes()[: MAX_MANIFEST_BYTES + 1]
    if len(raw) > MAX_MANIFEST_BYTES:
        raise SpecError(where, [(None, f"larger than {MAX_MANIFEST_BYTES // 2**20} MiB: not a shard manifest")])
    try:
        data = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise SpecError(where, [(None, f"not UTF-8 (byte {exc.start})")]) from None
    except json.JSONDecodeError as exc:
        raise SpecError(where, [(exc.lineno, f"not JSON: {exc.msg} (column {exc.colno})")]) from None
    except RecursionError:
        raise SpecError(where, [(None, "nested too deep: not a shard manifest")]) from None
    try:
        return ShardManifest.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        shown = "; ".join(f"{'.'.join(map(str, e['loc'])) or '(top)'}: {e['msg']}" for e in errors[:3])
        raise SpecError(where, [(None, f"not a shard manifest ({shown})")]) from None
