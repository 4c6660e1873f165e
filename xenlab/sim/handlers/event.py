"""event.*: event.from / event.next over the change log, event.inject, registration."""

from __future__ import annotations

import copy
import re
import time
from typing import Any

from ..calls import Ctx, Handlers
from ..deployment import Deployment
from ..model import ApiError
from ..wire import Lazy, encode_record

HANDLERS = Handlers("event")


class EventTimer:
    """An event.from timeout: wall-clock time for a served simulator (real clients wait in
    real time, as xapi's ``Clock.Timer`` does), the simulator's clock for in-process tests."""

    def __init__(self, dep: Deployment, timeout: float) -> None:
        self.dep = dep
        self.wall = dep.event_timeouts == "wall" or dep.clock.realtime
        now = time.monotonic() if self.wall else dep.clock.now()
        self.deadline = now + max(0.0, timeout)

    def remaining(self) -> float:
        return self.deadline - (time.monotonic() if self.wall else self.dep.clock.now())

    def expired(self) -> bool:
        return self.remaining() <= 0

    def wait_step(self) -> float:
        """How long to sleep on the change condition before looking again."""
        if self.wall:
            return min(1.0, max(0.005, self.remaining()))
        return 1.0  # virtual time: advance() notifies the condition


_TOKEN_RE = re.compile(r"^\s*(\d+)\s*,\s*(\d+)\s*$")


def _parse_token(token: str) -> int:
    if token == "":
        return 0
    m = _TOKEN_RE.match(token)
    if not m:
        raise ApiError("EVENT_FROM_TOKEN_PARSE_FAILURE", token)
    return int(m.group(1))


def _subs(ctx: Ctx, classes: list[str]) -> list[tuple[str, str | None]]:
    out = []
    for c in classes:
        if c == "*":
            out.append(("*", None))
            continue
        cls, _, obj = c.partition("/")
        out.append((cls.lower(), obj or None))
    return out


def _matches(subs, cls: str, ref: str) -> bool:
    lc = cls.lower()
    for c, o in subs:
        if c == "*" or (c == lc and (o is None or o == ref)):
            return True
    return False


def collect_events(ctx: Ctx, subs, since: int) -> tuple[list[dict], int, int]:
    db, dm = ctx.db, ctx.dm
    changes = db.changes_since(since)
    last_op: dict[str, tuple[str, str, int]] = {}
    created_in_window: set[str] = set()
    for ch in changes:
        if ch.op == "add":
            created_in_window.add(ch.ref)
        last_op[ch.ref] = (ch.cls, ch.op, ch.gen)
    events = []
    for ref, (cls, op, gen) in sorted(last_op.items(), key=lambda kv: kv[1][2]):
        if not _matches(subs, cls, ref):
            continue
        if op == "del" or not db.exists(ref):
            if ref in created_in_window:
                continue  # born and died inside the window: nothing to report
            events.append(
                {
                    "id": "0" if cls == "message" else str(gen),
                    "timestamp": "0.0",
                    "class": cls.lower(),
                    "operation": "del",
                    "ref": ref,
                }
            )
            continue
        ev_op = "add" if ref in created_in_window else "mod"
        rec = copy.deepcopy(db.get(ref))
        events.append(
            {
                "id": "0" if cls == "message" else str(gen),
                "timestamp": "0.0",
                "class": cls.lower(),
                "operation": ev_op,
                "ref": ref,
                "snapshot": Lazy(lambda proto, c=cls, r=rec: encode_record(dm, c, r, proto)),
            }
        )
    msg_gen = max((ch.gen for ch in changes if ch.cls == "message"), default=0)
    return events, ctx.dep.gen.value, msg_gen


@HANDLERS.api("event.from")
def event_from(ctx: Ctx, classes: list[str], token: str, timeout: float) -> dict[str, Any]:
    dep = ctx.dep
    since = _parse_token(token)
    msg_since = 0
    if token:
        msg_since = int(token.split(",")[1])
    subs = _subs(ctx, classes)
    timer = EventTimer(dep, timeout)
    while True:
        if ctx.session and not ctx.db.exists(ctx.session, "session"):
            raise ApiError("SESSION_INVALID", ctx.session)
        events, last, msg_gen = collect_events(ctx, subs, since)
        if events or timer.expired() or dep.stopping or ctx.host.db is not ctx.db:
            break
        since = last
        dep.cond.wait(timer.wait_step())
    counts = {c.lower(): n for c, n in ctx.db.counts().items()}
    token_out = f"{last:020d},{max(msg_gen, msg_since):020d}"
    return {"events": events, "valid_ref_counts": counts, "token": token_out}


_REGISTERED: dict[str, tuple[list, int]] = {}


@HANDLERS.api("event.register")
def event_register(ctx: Ctx, classes: list[str]) -> None:
    subs, last = _REGISTERED.get(ctx.session, ([], ctx.dep.gen.value))
    _REGISTERED[ctx.session] = (subs + [c for c in classes if c not in subs], last)


@HANDLERS.api("event.unregister")
def event_unregister(ctx: Ctx, classes: list[str]) -> None:
    subs, last = _REGISTERED.get(ctx.session, ([], ctx.dep.gen.value))
    _REGISTERED[ctx.session] = ([c for c in subs if c not in classes], last)


@HANDLERS.api("event.next")
def event_next(ctx: Ctx) -> list[dict]:
    if ctx.session not in _REGISTERED:
        raise ApiError("SESSION_NOT_REGISTERED", ctx.session)
    classes, since = _REGISTERED[ctx.session]
    subs = _subs(ctx, classes)
    while True:
        events, last, _ = collect_events(ctx, subs, since)
        if events or ctx.dep.stopping:
            break
        if ctx.session and not ctx.db.exists(ctx.session, "session"):
            raise ApiError("SESSION_INVALID", ctx.session)
        since = last
        ctx.dep.cond.wait(1.0)
    _REGISTERED[ctx.session] = (classes, last)
    for e in events:
        e["obj_uuid"] = ""
    return events


@HANDLERS.api("event.get_current_id")
def event_get_current_id(ctx: Ctx) -> int:
    return ctx.dep.gen.value


@HANDLERS.api("event.inject")
def event_inject(ctx: Ctx, cls: str, ref: str) -> str:
    real = ctx.dm.class_by_lower(cls)
    if real is None or not ctx.db.exists(ref, real):
        raise ApiError("HANDLE_INVALID", cls, ref)
    ctx.db.touch(ref)
    # xapi returns the generation before the touch, so event.from on it reports the touch at once
    return f"{ctx.dep.gen.value - 1:020d},{0:020d}"
