"""pool.*_ha*: enabling/disabling HA, failures to tolerate, emergency master transition."""

from __future__ import annotations

from ..calls import Ctx, Handlers
from ..model import ApiError

HANDLERS = Handlers("ha")


@HANDLERS.api("pool.enable_ha", duration=30.0)
def pool_enable_ha(ctx: Ctx, heartbeat_srs: list[str], configuration: dict[str, str]) -> None:
    dep, db = ctx.dep, ctx.db
    pref = dep.pool_ref(db)
    if db.get(pref)["ha_enabled"]:
        raise ApiError("HA_IS_ENABLED")
    master = dep.master_of(db)
    for h in dep.members(db):
        if not dep.host_live(db, h.ref) or not dep.reachable(master, h):
            raise ApiError("HOST_OFFLINE", h.ref)
    hosts = [h.ref for h in dep.members(db)]

    def fits(sr: str) -> bool:
        return all(dep.host_sees_sr(db, href, sr) for href in hosts)

    if not heartbeat_srs:
        heartbeat_srs = [sr for sr, rec in db.iter_records("SR") if rec["shared"] and fits(sr)]
    if not heartbeat_srs:
        raise ApiError("CANNOT_CREATE_STATE_FILE")
    sr = heartbeat_srs[0]
    db.get(sr, "SR")
    if not fits(sr):
        raise ApiError("SR_HAS_NO_PBDS", sr)
    statefile = db.create(
        "VDI",
        name_label="Statefile for HA",
        SR=sr,
        virtual_size=4 * 1024 * 1024,
        type="ha_statefile",
        sharable=True,
        read_only=False,
        other_config={},
    )
    db.set(
        pref,
        ha_enabled=True,
        ha_configuration=dict(configuration),
        ha_statefiles=[statefile],
        ha_plan_exists_for=int(db.get(pref)["ha_host_failures_to_tolerate"]),
    )
    for h in dep.members(db):
        db.set(h.ref, ha_statefiles=[statefile], ha_network_peers=[x.ref for x in dep.members(db) if x is not h])
    # hosts already silent when HA comes on are judged by HA from now on
    for h in dep.members(db):
        if h.down_since is not None:
            dep.clock.call_later(dep.ha_timeout(db), lambda: dep._ha_tick(db))


@HANDLERS.api("pool.disable_ha", duration=10.0)
def pool_disable_ha(ctx: Ctx) -> None:
    dep, db = ctx.dep, ctx.db
    pref = dep.pool_ref(db)
    prec = db.get(pref)
    if not prec["ha_enabled"]:
        raise ApiError("HA_NOT_ENABLED")
    for vdi in prec["ha_statefiles"]:
        if db.exists(vdi, "VDI"):
            db.destroy(vdi)
    db.set(pref, ha_enabled=False, ha_statefiles=[], ha_plan_exists_for=0)
    for h in dep.members(db):
        db.set(h.ref, ha_statefiles=[], ha_network_peers=[])


@HANDLERS.api("pool.set_ha_host_failures_to_tolerate")
def pool_set_ntol(ctx: Ctx, pool: str, value: int) -> None:
    ctx.db.get(pool, "pool")
    if value < 0:
        raise ApiError("INVALID_VALUE", "ha_host_failures_to_tolerate", value)
    ctx.db.set(pool, ha_host_failures_to_tolerate=value)
    if ctx.db.get(pool)["ha_enabled"]:
        ctx.db.set(pool, ha_plan_exists_for=min(value, _max_failures(ctx)))


def _max_failures(ctx: Ctx) -> int:
    return max(0, len(ctx.dep.members(ctx.db)) - 1)


@HANDLERS.api("pool.ha_compute_max_host_failures_to_tolerate")
def pool_ha_max(ctx: Ctx) -> int:
    return _max_failures(ctx)


@HANDLERS.api("pool.ha_failover_plan_exists")
def pool_ha_plan_exists(ctx: Ctx, n: int) -> bool:
    return n <= _max_failures(ctx)


@HANDLERS.api("pool.emergency_transition_to_master")
def pool_emergency_transition(ctx: Ctx) -> None:
    ctx.db.set(ctx.dep.pool_ref(ctx.db), master=ctx.host.ref)
