"""message.*: xapi's alert messages."""

from __future__ import annotations

from ..calls import Ctx, Handlers

HANDLERS = Handlers("message")


@HANDLERS.api("message.create")
def message_create(ctx: Ctx, name: str, priority: int, cls: str, obj_uuid: str, body: str) -> str:
    return ctx.dep.add_message(ctx.db, name, priority, cls, obj_uuid, body)


@HANDLERS.api("message.destroy")
def message_destroy(ctx: Ctx, ref: str) -> None:
    ctx.db.get(ref, "message")
    ctx.db.destroy(ref)


@HANDLERS.api("message.destroy_many")
def message_destroy_many(ctx: Ctx, refs: list[str]) -> None:
    for r in refs:
        if ctx.db.exists(r, "message"):
            ctx.db.destroy(r)


@HANDLERS.api("message.get_since")
def message_get_since(ctx: Ctx, since) -> dict:
    return {r: m for r, m in ctx.db.iter_records("message") if m["timestamp"] > since}


@HANDLERS.api("message.get")
def message_get(ctx: Ctx, cls: str, obj_uuid: str, since) -> dict:
    return {
        r: m
        for r, m in ctx.db.iter_records("message")
        if m["cls"] == cls and m["obj_uuid"] == obj_uuid and m["timestamp"] > since
    }
