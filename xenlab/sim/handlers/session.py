"""session.*: login, logout, password change."""

from __future__ import annotations

from ..calls import Ctx, Handlers
from ..model import ApiError

HANDLERS = Handlers("session")


@HANDLERS.api("session.login_with_password")
def login_with_password(ctx: Ctx, uname: str, pwd: str, version: str = "1.1", originator: str = "") -> str:
    dep, host = ctx.dep, ctx.host
    if not dep.is_master(host):
        master = dep.master_of(ctx.db)
        raise ApiError("HOST_IS_SLAVE", ctx.db.get(master.ref, "host")["address"])
    if not dep.check_password(uname, pwd):
        raise ApiError("SESSION_AUTHENTICATION_FAILED", uname, "Authentication failure")
    return ctx.db.create(
        "session",
        this_host=host.ref,
        last_active=dep.now(),
        pool=False,
        is_local_superuser=True,
        auth_user_name=uname,
        originator=originator,
        validation_time=dep.now(),
    )


@HANDLERS.api("session.logout")
def logout(ctx: Ctx) -> None:
    if ctx.db.exists(ctx.session, "session"):
        ctx.db.destroy(ctx.session)


@HANDLERS.api("session.local_logout")
def local_logout(ctx: Ctx) -> None:
    logout(ctx)


@HANDLERS.api("session.change_password")
def change_password(ctx: Ctx, old: str, new: str) -> None:
    if not ctx.dep.check_password(ctx.dep.user, old):
        raise ApiError("SESSION_AUTHENTICATION_FAILED", ctx.dep.user, "Authentication failure")
    ctx.dep._password = new
