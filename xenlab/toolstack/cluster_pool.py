"""An xl pool's cluster: where its BMCs are, forming it, guests as resources, failover read back.

The xl driver (`xl.py`) keeps the pool's storage, trust and guests; this module gives it
the cluster stack of `cluster.py` on the lab it runs on:
- a QEMU lab with `bmc: ipmi`: each dom0 reaches every virtual BMC through the BMC network
  of `lab/bmc_relay.py` (a relay in dom0 at 127.0.1.N:623);
- a static lab: each host's `ipmi:` (a real BMC's address; its password from the lab file's
  password_file or password_env, copied 0600 into the members' dom0).
A lab whose members have no BMC gets no cluster: there is nothing to fence with, and a
Pacemaker cluster with shared storage and no fencing is not one anybody should run.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..errors import XenlabError
from ..waiting import wait_for
from .base import FailoverResult, MigrationResult
from .cluster import (
    ClusterPlan,
    ClusterStack,
    FenceTarget,
    Quorum,
    failover_record,
    guest_resource,
    token_ms,
)

if TYPE_CHECKING:
    from .xl import XlToolstack

RELAY_UNIT = "xenlab-bmc-relay"
SSH_CONFIG = "/etc/ssh/ssh_config.d/xenlab-pool.conf"


def ssh_config(addresses: dict[str, str]) -> str:
    """dom0's ssh to the other members (by name or pool address) with the pool's own key and
    pinned host keys, so that the resource agent's `xl migrate` needs no user's ~/.ssh."""
    from .xl import POOL_KEY, POOL_KNOWN_HOSTS

    names = " ".join([*addresses, *addresses.values()])
    return (f"# written by xenlab (toolstack/cluster_pool.py)\nHost {names}\n    IdentityFile {POOL_KEY}\n"
            f"    IdentitiesOnly yes\n    UserKnownHostsFile {POOL_KNOWN_HOSTS}\n    StrictHostKeyChecking yes\n"
            "    BatchMode yes\n")


@dataclass(frozen=True)
class BmcAccess:
    targets: dict[str, FenceTarget]
    passwords: dict[str, str]


def bmc_access(lab, members: list[str]) -> BmcAccess | None:
    """How the members' dom0 reach each member's BMC, or None if one of them has none."""
    routes = getattr(lab, "bmc_routes", None)
    if routes is not None:  # a QEMU lab
        from ..lab.bmc import credentials_path, read_credentials

        found = routes()
        if not all(m in found for m in members):
            return None
        credentials = read_credentials(credentials_path(lab.run.root))
        return BmcAccess({m: FenceTarget(m, found[m].dom0_address, 623, credentials.user) for m in members},
                         {m: credentials.password for m in members})
    spec_hosts = lab.spec.hosts
    if not all(getattr(spec_hosts[m], "ipmi", None) is not None for m in members):
        return None
    from ..lab.static import password_source

    targets, passwords = {}, {}
    for m in members:
        ipmi = spec_hosts[m].ipmi
        targets[m] = FenceTarget(m, ipmi.address, ipmi.port, ipmi.user)
        passwords[m] = password_source(ipmi, lab.base)()
    return BmcAccess(targets, passwords)


def start_dom0_relays(lab, members: list[str]) -> None:
    """The dom0 end of a QEMU lab's BMC network in every member (a static lab has a real one)."""
    routes = getattr(lab, "bmc_routes", None)
    if routes is None:
        return
    from ..lab.bmc_relay import DOM0_RELAY, DOM0_RELAY_PATH

    pairs = " ".join(route.relay_arg() for route in routes().values())
    for m in members:
        host = lab.host(m)
        host.write_file(DOM0_RELAY_PATH, DOM0_RELAY.read_text(), 0o755)
        host.succeed(f"systemctl stop {RELAY_UNIT} 2>/dev/null; systemctl reset-failed {RELAY_UNIT} 2>/dev/null; "
                     f"systemd-run --unit={RELAY_UNIT} --property=Restart=always /usr/bin/python3 "
                     f"{DOM0_RELAY_PATH} {pairs}", timeout=60)


class ClusterPool:
    """The cluster of an xl pool: formed with the pool, consulted for its protected guests."""

    def __init__(self, xl: XlToolstack, members: list[str]):
        self.xl = xl
        self.members = list(members)
        self.stack = ClusterStack({m: xl.lab.host(m) for m in members})

    # forming ------------------------------------------------------------------------------
    @classmethod
    def form(cls, xl: XlToolstack, members: list[str], pool_name: str, detection_timeout_s: float) -> ClusterPool:
        access = bmc_access(xl.lab, members)
        if access is None:
            raise XenlabError("no BMC for every member: the cluster stack fences through BMCs")
        start_dom0_relays(xl.lab, members)
        addresses = {m: xl.lab.host(m).address(xl.network) for m in members}
        for m in members:  # ocf:heartbeat:Xen's `xl migrate` runs plain ssh to the target's name
            xl.lab.host(m).write_file(SSH_CONFIG, ssh_config(addresses), 0o644)
        services = xl.lab.services.address(xl.network)
        plan = ClusterPlan(
            name=_cluster_name(pool_name),
            members=tuple((m, xl.lab.host(m).address(xl.network)) for m in members),
            token_ms=token_ms(detection_timeout_s),
            fence_targets=tuple(access.targets[m] for m in members), ping_target=services)
        pool = cls(xl, members)
        pool.quorum = pool.stack.form(plan, access.passwords)
        return pool

    quorum: Quorum | None = None

    def live_member(self, exclude: tuple[str, ...] = ()) -> str:
        for m in self.members:
            if m not in exclude and self.xl.host_alive(m, timeout=10):
                return m
        raise XenlabError("no member of the cluster answers")

    def status(self) -> dict:
        """Membership and quorum as the stack reports them (`xenlab status`)."""
        member = self.live_member()
        state, quorum = self.stack.state(member), self.stack.quorum(member)
        return {"asked": member, "online": list(state.online) if state else [],
                "offline": list(state.offline) if state else [], "dc": state.dc if state else None,
                "quorate": quorum.quorate, "votes": quorum.total_votes, "expected_votes": quorum.expected_votes,
                "flags": list(quorum.flags), "resources": {k: list(v) for k, v in (state.resources if state else {}).items()}}

    # guests -------------------------------------------------------------------------------
    def add_guest(self, vm: str, config_path: str, priority: int, host: str, timeout: float = 600) -> None:
        """Make `vm` a resource placed on `host`, wait until the stack runs it there, then lift
        the placement (stickiness keeps it there; the stack may move it on failure)."""
        member = self.live_member()
        self.stack.configure(member, guest_resource(vm, config_path, priority, host))
        self._wait_running(vm, host, timeout)
        self.stack.shell(member).succeed(
            f"cibadmin --delete --scope constraints --xml-text '<rsc_location id=\"{vm}-placed\"/>'", timeout=120)

    def _wait_running(self, vm: str, host: str, timeout: float) -> None:
        """Asked of whichever member answers at each look: the one asked first may be the
        source of a move that loses its power meanwhile."""
        def running_there() -> bool:
            try:
                return self.stack.running_on(self.live_member(), vm) == (host,)
            except XenlabError:  # no member answers right now
                return False

        def last_seen() -> str:
            try:
                return self.stack.shell(self.live_member()).run("crm_mon -1 2>&1 | tail -20", timeout=60).stdout
            except XenlabError as exc:
                return str(exc)

        wait_for(running_there, f"the cluster to run {vm} on {host}", timeout, 2.0, last_seen)

    def is_resource(self, vm: str) -> bool:
        member = self.live_member()
        return self.stack.shell(member).run(f"crm_resource --resource {vm} --query-xml >/dev/null 2>&1",
                                            timeout=60).ok

    def remove_guest(self, vm: str) -> None:
        member = self.live_member()
        self.stack.shell(member).run(f"{_stop(vm)}; crm_resource --clear --resource {vm}; "
                                     f"crm_resource --resource {vm} --delete --resource-type primitive", timeout=360)

    def stop_guest(self, vm: str) -> None:
        member = self.live_member()
        self.stack.shell(member).succeed(_stop(vm), timeout=360)

    def move(self, vm: str, source: str, destination: str, on_start=None, timeout: float = 900) -> MigrationResult:
        """Live migration decided by the stack: a move constraint, the stack's migrate_to and
        migrate_from, the constraint cleared once the guest runs on `destination`."""
        member = self.live_member()
        shell = self.stack.shell(member)
        started_at, started = time.time(), time.monotonic()
        if on_start is not None:
            on_start()
        record = MigrationResult(vm, source, destination, started_at, 0.0)
        moved = shell.run(f"crm_resource --move --resource {vm} --node {destination}", timeout=120)
        if not moved.ok:
            record.ok, record.error = False, (moved.stderr or moved.stdout).strip()[-300:]
            return record
        try:
            self._wait_running(vm, destination, timeout)
        except XenlabError as exc:
            record.ok, record.error = False, str(exc).splitlines()[0]
        record.duration_s = time.monotonic() - started
        try:  # the member that took the move may be gone (a power cut during it)
            self.stack.shell(self.live_member()).run(f"crm_resource --clear --resource {vm}", timeout=120)
        except XenlabError as exc:
            record.error = record.error or f"the move constraint was not cleared: {exc}"
        return record

    # failover -----------------------------------------------------------------------------
    def await_failover(self, lost: str, fault_at: float, victims: list[str], timeout: float = 600) -> FailoverResult:
        """Wait for the stack to run `victims` on a survivor, then read what it did and when
        from a survivor's journal and fencing history (moments on the controller's clock)."""
        result = FailoverResult(lost, fault_at)
        survivors = [m for m in self.members if m != lost]
        deadline = time.monotonic() + timeout

        def placed() -> str | None:
            for member in survivors:
                if not self.xl.host_alive(member, timeout=10):
                    continue
                state = self.stack.state(member)
                if state is None:
                    continue
                where = {vm: state.resources.get(vm, ()) for vm in victims}
                if all(nodes and lost not in nodes for nodes in where.values()):
                    return member
            return None

        try:
            member = wait_for(placed, f"the cluster to run {', '.join(victims)} off {lost}", timeout, 2.0,
                              lambda: "")
        except XenlabError as exc:
            result.ok, result.error = False, str(exc).splitlines()[0]
            member = next((m for m in survivors if self.xl.host_alive(m, timeout=10)), None)
            if member is None:
                return result
        self.read_records(member, lost, fault_at, victims, result)
        result.ok = result.ok and len(result.restarted) == len(victims) and time.monotonic() <= deadline + 60
        return result

    def read_records(self, member: str, lost: str, fault_at: float, victims: list[str],
                     result: FailoverResult) -> None:
        offset = self.stack.clock_offset(member)
        lost_id = self.members.index(lost) + 1
        lines = self.stack.journal(member, fault_at + offset - 5)
        record = failover_record(lines, lost, lost_id, victims, fault_at + offset - 5)
        state = self.stack.state(member)
        history = self.stack.fence_history(member, lost)

        def after(moment: float | None) -> float | None:
            return None if moment is None else round(moment - offset - fault_at, 3)

        result.detected_after_s = after(record.membership_changed_at)
        result.fence_requested_after_s = after(record.fence_requested_at)
        result.fenced_after_s = after(record.fence_done_at)
        for vm in victims:
            nodes = state.resources.get(vm, ()) if state else ()
            if nodes:
                result.restarted[vm] = nodes[0]
            if vm in record.started:
                result.started_after_s[vm] = after(record.started[vm])
        done = [e for e in history if e.status == "success"]
        result.fencing = (f"{done[-1].action} of {lost} by {done[-1].delegate} (asked by {done[-1].origin}): success"
                          if done else record.fence_result or "no fencing of it recorded")
        if record.fence_failures:
            result.fencing += f" ({record.fence_failures} failed attempt(s) logged first)"
        result.fenced_by = done[-1].delegate if done else record.fenced_by
        result.records = record.lines + [f"clock of {member}: {offset:+.3f} s against the controller's"]
        if record.fence_done_at is None and not done:
            result.ok, result.error = False, f"the cluster has no record of fencing {lost}"


def _stop(vm: str) -> str:
    """Stop `vm` as `crm resource stop` does (its target-role), with Pacemaker's own C tools
    (crmsh's Python costs a PV dom0 under TCG seconds per call), and wait for the stack."""
    return (f"crm_resource --resource {vm} --meta --set-parameter target-role --parameter-value Stopped && "
            "crm_resource --wait --timeout=240s")


def _cluster_name(pool_name: str) -> str:
    """corosync's cluster_name: letters, digits, - and _, at most 32 characters."""
    cleaned = "".join(c if c.isalnum() or c in "-_" else "-" for c in pool_name)[:32]
    return cleaned or "xenlab"
