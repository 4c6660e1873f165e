"""XAPI call dispatch: name resolution, arity, session checks, Async, registry.

The order of checks mirrors xapi's generated server: resolve the wire name
(``Class.msg`` or the alternative ``Class_msg``, optional ``Async.`` prefix),
match the parameter count, check the session, then run the implementation.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from .calls import Ctx, Impl, new_task
from .datamodel import Datamodel, MessageSpec, Type
from .deployment import Deployment
from .handlers import registry
from .hosts import SimHost
from .model import ApiError
from .wire import XML, DecodeError, decode, encode, xml_value

Handler = Callable[..., Any]


# wire name -> custom implementation, from the handler modules' explicit registries.
CUSTOM: dict[str, Impl] = registry()

# Trailing parameters xapi declares with defaults (facts from xapi's IDL,
# not present in the JSON export).  Only used when the export lists them.
OPTIONAL_TRAILING: dict[str, tuple[str, ...]] = {
    "session.login_with_password": ("version", "originator"),
    "host.evacuate": ("network", "evacuate_batch_size"),
    "host.disable": ("auto_enable",),
    "VM.snapshot": ("ignore_vdis",),
}

# Implicit message families answered generically for every class.
GENERIC_PREFIXES = ("get_", "set_", "add_to_", "remove_from_", "add_", "remove_")
HIDDEN_GENERIC = ("get_all_records_where",)  # hidden from the export, accepted by xapi


class Outcome:
    """What the transport should send: success value or failure list."""

    __slots__ = ("error", "fault", "ok", "value")

    def __init__(self, ok: bool, value: Any = None, error: list[str] | None = None, fault: str | None = None):
        self.ok, self.value, self.error, self.fault = ok, value, error, fault


# ---------------------------------------------------------------------------- generic


def generic_impl(dm: Datamodel, m: MessageSpec) -> Handler | None:
    """Implementation for an implicit accessor/constructor message, if any."""
    from . import generic  # late import: generic imports this module

    return generic.make(dm, m)


def resolve(dm: Datamodel, name: str) -> tuple[str | None, MessageSpec | None, bool]:
    """Map a wire name to (canonical name, spec, is_async)."""
    is_async = False
    if name.startswith("Async."):
        is_async, name = True, name[len("Async.") :]
    if "." in name:
        cls, _, msg = name.partition(".")
        m = dm.message(cls, msg)
        if m is None and msg in HIDDEN_GENERIC and cls in dm.classes:
            m = hidden_message(dm, cls, msg)
        return name, m, is_async
    if not is_async:
        # xapi also answers the alternative "Class_msg" spelling (sync only)
        for cls in sorted(dm.classes, key=len, reverse=True):
            if name.startswith(cls + "_"):
                msg = name[len(cls) + 1 :]
                m = dm.message(cls, msg)
                if m is None and msg in HIDDEN_GENERIC:
                    m = hidden_message(dm, cls, msg)
                if m is not None:
                    return name, m, False
    return name, None, is_async


_HIDDEN_CACHE: dict[tuple[int, str, str], MessageSpec] = {}


def hidden_message(dm: Datamodel, cls: str, msg: str) -> MessageSpec:
    """Synthesise ``get_all_records_where`` for classes whose export omits it."""
    key = (id(dm), cls, msg)
    if key not in _HIDDEN_CACHE:
        from .datamodel import ParamSpec, parse_type

        _HIDDEN_CACHE[key] = MessageSpec(
            cls=cls,
            name=msg,
            params=(ParamSpec("session_id", Type("ref", name="session")), ParamSpec("expr", Type("string"))),
            result=parse_type(f"({cls} ref -> {cls} record) map"),
            result_text=f"({cls} ref -> {cls} record) map",
            errors=(),
            implicit=True,
            state="Published_s",
        )
    return _HIDDEN_CACHE[key]


_IMPL_CACHE: dict[tuple[int, str], Impl | None] = {}


def implementation(dm: Datamodel, m: MessageSpec) -> Impl | None:
    key = (id(dm), m.wire_name)
    if key not in _IMPL_CACHE:
        impl = CUSTOM.get(m.wire_name)
        if impl is None:
            fn = generic_impl(dm, m)
            impl = Impl(fn) if fn else None
        _IMPL_CACHE[key] = impl
    return _IMPL_CACHE[key]


def has_async(m: MessageSpec) -> bool:
    """Accessors have no Async form in xapi; custom calls and ctors/dtors do."""
    if m.implicit and m.name not in ("create", "destroy"):
        return False
    return m.cls not in ("session", "event") or m.name not in ("login_with_password", "from", "next")


def list_methods(dm: Datamodel) -> list[str]:
    """What xapi's generated server answers to ``system.listMethods``: the sync wire name
    of every message of every class, in datamodel order, removed ones included."""
    return [m.wire_name for c in dm.classes.values() for m in c.messages.values()]


def implemented_messages(dm: Datamodel) -> list[str]:
    out = set()
    for cname, c in dm.classes.items():
        for m in c.messages.values():
            if m.removed:
                continue
            if implementation(dm, m) is not None:
                out.add(m.wire_name)
        for msg in HIDDEN_GENERIC:
            if msg not in c.messages:
                out.add(f"{cname}.{msg}")
    return sorted(out)


# ---------------------------------------------------------------------------- dispatch


def check_session(dep: Deployment, host: SimHost, sref: Any) -> None:
    db = host.db
    if not isinstance(sref, str) or db is None or not db.exists(sref, "session"):
        raise ApiError("SESSION_INVALID", sref if isinstance(sref, str) else str(sref))
    s = db.get(sref, "session")
    if not s["pool"] and not dep.is_master(host):
        master = dep.master_of(db)
        raise ApiError("HOST_IS_SLAVE", db.get(master.ref, "host")["address"])
    s["last_active"] = dep.now()  # not an event: xapi throttles this write too


def dispatch(dep: Deployment, host: SimHost, name: str, params: list[Any], proto: str) -> Outcome:
    try:
        return _dispatch(dep, host, name, params, proto)
    except ApiError as e:
        return Outcome(False, error=e.description)
    except Exception as e:  # noqa: BLE001 - xapi maps stray exceptions to INTERNAL_ERROR
        import traceback

        traceback.print_exc()
        return Outcome(False, error=["INTERNAL_ERROR", f"{type(e).__name__}: {e}"])


def _dispatch(dep: Deployment, host: SimHost, name: str, params: list[Any], proto: str) -> Outcome:
    dm = dep.dm
    if name == "system.listMethods":
        return Outcome(True, value=list_methods(dm))
    if name.startswith("system.isAlive:"):
        return Outcome(True, value=params[0] if params else "")
    call, m, is_async = resolve(dm, name)
    if m is None:
        if params:
            with dep.lock:
                check_session(dep, host, params[0])
        raise ApiError("MESSAGE_METHOD_UNKNOWN", call)
    n_all = len(m.args)
    opt = [p for p in OPTIONAL_TRAILING.get(m.wire_name, ()) if p in {a.name for a in m.args}]
    n_req = n_all - len(opt)
    received = len(params) - (1 if m.has_session else 0)
    if not (n_req <= received <= n_all):
        raise ApiError("MESSAGE_PARAMETER_COUNT_MISMATCH", call, n_req, received)
    if m.removed:
        if m.has_session:
            with dep.lock:
                check_session(dep, host, params[0])
        raise ApiError("MESSAGE_REMOVED")
    args_in = params[1:] if m.has_session else params
    args = []
    for spec, raw in zip(m.args, args_in):
        if spec.type.kind == "record" and m.name == "create":
            args.append(raw if isinstance(raw, dict) else _type_error(spec.name))
            continue
        try:
            args.append(decode(dm, raw, spec.type))
        except DecodeError:
            raise ApiError("FIELD_TYPE_ERROR", spec.name) from None
    impl = implementation(dm, m)
    if is_async and not has_async(m):
        return Outcome(False, error=["Fault", f"No async mode for this operation (rpc: {call})"])
    with dep.lock:
        if dep.stopping:
            raise ApiError("INTERNAL_ERROR", "simulator stopping")
        session = None
        if m.has_session:
            check_session(dep, host, params[0])
            session = params[0]
        if impl is None:
            # In the datamodel but not simulated: xapi's own stubs answer so.
            raise ApiError("NOT_IMPLEMENTED", m.wire_name)
        ctx = Ctx(dep, host, host.db, session, m)  # type: ignore[arg-type]
        if is_async:
            task = start_async(ctx, impl, tuple(args), proto)
            return Outcome(True, value=task)
        delay = _duration(impl, ctx, tuple(args)) * dep.time_scale if dep.clock.realtime else 0.0
        result = impl.fn(ctx, *args)
        value = encode(dm, result, m.result, proto)
    if delay > 0:
        time.sleep(delay)
    return Outcome(True, value=value)


def _type_error(name: str):
    raise ApiError("FIELD_TYPE_ERROR", name)


def _duration(impl: Impl, ctx: Ctx, args: tuple) -> float:
    d = impl.duration
    try:
        return float(d(ctx, args)) if callable(d) else float(d)
    except Exception:  # noqa: BLE001 - a duration estimate must never fail the call
        return 0.0


# ---------------------------------------------------------------------------- tasks


def start_async(ctx: Ctx, impl: Impl, args: tuple, proto: str) -> str:
    dep = ctx.dep
    task = new_task(ctx, f"Async.{ctx.msg.wire_name}", cancellable=True)
    duration = 0.0 if dep.async_instant else _duration(impl, ctx, args)
    if dep.clock.realtime:
        duration *= dep.time_scale
    db = ctx.db

    def run() -> None:
        with dep.lock:
            if not db.exists(task, "task"):
                return
            trec = db.get(task, "task")
            if trec["status"] != "pending":
                return
            sub = Ctx(dep, ctx.host, db, ctx.session, ctx.msg, task)
            try:
                if ctx.session is not None and not db.exists(ctx.session, "session"):
                    raise ApiError("SESSION_INVALID", ctx.session)
                result = impl.fn(sub, *args)
                value = encode(dep.dm, result, ctx.msg.result, XML)
                db.set(
                    task,
                    status="success",
                    progress=1.0,
                    finished=dep.now(),
                    result=xml_value(value),
                    allowed_operations=[],
                )
            except ApiError as e:
                db.set(
                    task,
                    status="failure",
                    progress=1.0,
                    finished=dep.now(),
                    error_info=e.description,
                    allowed_operations=[],
                )
            except Exception as e:  # noqa: BLE001 - surfaced like xapi does
                db.set(
                    task,
                    status="failure",
                    progress=1.0,
                    finished=dep.now(),
                    error_info=["INTERNAL_ERROR", repr(e)],
                    allowed_operations=[],
                )

    if duration <= 0 and not dep.clock.realtime:
        # run after the response is built but without waiting for the clock
        dep.clock.call_at(dep.clock.now(), run)
        _kick(dep)
    else:
        dep.clock.call_later(duration, run)
    return task


def _kick(dep: Deployment) -> None:
    """Run zero-duration timers now, on a helper thread (we hold the lock)."""
    import threading

    threading.Thread(target=dep.clock.advance, args=(0.0,), daemon=True).start()
