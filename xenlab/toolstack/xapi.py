"""The XAPI toolstack driver: XCP-ng / XenServer pools through the XenAPI client.

Unlike xl, xapi keeps the pool itself: membership, the shared SR, HA and where every
guest runs live in the master's database, which every member replicates. The driver
holds one session on the master and follows the master when it moves (`HOST_IS_SLAVE`
names the new one; a dead master is replaced by HA). Everything it waits for (tasks,
host failure, restarts) is awaited with `event.from`, so a wait ends when xapi says so.

The driver's settings (protected guests and their order, the detection timeout) are
stored in the pool's `other_config`, so any client of the pool sees them.
"""

from __future__ import annotations

import datetime as _dt
import http.client
import json
import re
import time
import xmlrpc.client
from collections.abc import Callable
from dataclasses import asdict
from typing import Any, TypeVar

import XenAPI

from ..errors import WaitTimeout, XenlabError
from ..lab.contract import Observer, XapiAccess
from ..lab.xapi_login import NoMaster, follow_to_master, transport_for
from .base import (
    FailoverResult,
    GuestSpec,
    HostFacts,
    MigrationResult,
    PoolInfo,
    PoolRefused,
    PoolSettings,
    Toolstack,
    VerbNotOffered,
    VMInfo,
)

T = TypeVar("T")
MiB = 1024 * 1024
NULL_REF = "OpaqueRef:NULL"
API_VERSION = "2.21"
ORIGINATOR = "xenlab"
SETTINGS_KEY = "xenlab_settings"  # pool.other_config: the PoolSettings as JSON
SR_NAME = "xenlab shared"
GUEST_BRIDGE = "xenbr0"
EVENT_WAIT_S = 30.0  # longest single event.from; a wait is a series of them
CALL_TIMEOUT_S = EVENT_WAIT_S + 30.0  # HTTP timeout of any call (an event.from included)
UNREACHABLE = (OSError, http.client.HTTPException, xmlrpc.client.ProtocolError)

# pool.join refusals that say the host does not fit the pool (anything else is an error)
MISFITS = {
    "POOL_HOSTS_NOT_HOMOGENEOUS": "hosts are not homogeneous: {0}",
    "POOL_JOINING_HOST_MUST_HAVE_SAME_PRODUCT_VERSION": "product version differs from the master's",
    "POOL_JOINING_HOST_MUST_HAVE_SAME_API_VERSION": "API version differs from the master's",
    "JOINING_HOST_CANNOT_HAVE_RUNNING_VMS": "it runs guests of its own",
    "JOINING_HOST_CANNOT_HAVE_VMS_WITH_CURRENT_OPERATIONS": "its guests have operations in progress",
    "JOINING_HOST_CANNOT_CONTAIN_SHARED_SRS": "it has shared SRs of its own",
    "JOINING_HOST_CANNOT_BE_MASTER_OF_OTHER_HOSTS": "it is the master of another pool",
    "HA_IS_ENABLED": "HA is enabled on it or on the pool",
}



def refusal(code: list[str]) -> str | None:
    """The reason a pool.join error gives for a misfit host, or None if it is no misfit."""
    template = MISFITS.get(code[0]) if code else None
    if template is None:
        return None
    return f"{template.format(*code[1:], *[''] * 3)} (xapi {code[0]})"


def describe(failure: XenAPI.Failure) -> str:
    details = failure.details if isinstance(failure.details, list) else [str(failure.details)]
    return " ".join(str(d) for d in details)


def xapi_time(value: Any) -> float:
    """An xapi DateTime (XML-RPC dateTime.iso8601, UTC) as a Unix time."""
    text = str(getattr(value, "value", value))
    for fmt in ("%Y%m%dT%H:%M:%SZ", "%Y%m%dT%H:%M:%S", "%Y-%m-%dT%H:%M:%SZ"):
        try:
            return _dt.datetime.strptime(text, fmt).replace(tzinfo=_dt.UTC).timestamp()
        except ValueError:
            continue
    raise XenlabError(f"cannot read xapi time {text!r}")


def task_value(result: str) -> Any:
    """A task's result (the XML-RPC encoding of the call's return value) as a Python value."""
    if not result:
        return None
    body = f"<methodResponse><params><param>{result}</param></params></methodResponse>"
    try:
        return xmlrpc.client.loads(body)[0][0]
    except Exception:  # noqa: BLE001 - some results are plain text
        return re.sub(r"</?value>", "", result)


def vm_state(power_state: str, host_live: bool) -> str:
    """xapi's power state as VMInfo states; a guest of a host xapi holds dead is unknown."""
    state = power_state.lower()
    if state in ("running", "paused") and not host_live:
        return "unknown"
    return state if state in ("running", "paused", "halted") else "halted"


class XapiToolstack(Toolstack):
    kind = "xapi"

    def __init__(self, access: XapiAccess, master: str | None = None):
        if not access.addresses:
            raise XenlabError("an xapi pool needs at least one host")
        self.access = access
        self.names = {address: name for name, address in access.addresses.items()}
        self._master_address = access.addresses[master or next(iter(access.addresses))]
        self._members: list[str] = [self._master_address]  # addresses of the pool, as last seen
        self._session: XenAPI.Session | None = None

    # sessions --------------------------------------------------------------------------
    def _open(self, address: str, timeout: float = CALL_TIMEOUT_S) -> XenAPI.Session:
        url = self.access.url_for(address)
        session = XenAPI.Session(url, transport=transport_for(url, timeout, self.access.ssl_context))
        session.xenapi.login_with_password(self.access.user, self.access.password, API_VERSION, ORIGINATOR)
        return session

    def _login(self, first: str) -> tuple[XenAPI.Session, str]:
        """Log in to the master, starting at `first`, then the pool's other members, following HOST_IS_SLAVE."""
        return follow_to_master(self._open, [first] + [a for a in self._members if a != first],
                                lambda address: self.names.get(address, address))

    def _master(self) -> XenAPI.Session:
        if self._session is None:
            self._session, self._master_address = self._login(self._master_address)
        return self._session

    def _drop(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            try:
                session.xenapi.session.logout()
            except (XenAPI.Failure, *UNREACHABLE):
                pass

    def _api(self, fn: Callable[[Any], T]) -> T:
        """Call `fn(xenapi)` on the master; log in again if the master moved or xapi restarted.

        Retried only when the call cannot have run: the connection was refused or the host
        answered that it is no longer the master (xapi's own client retries SESSION_INVALID).
        """
        for attempt in range(2):
            session = self._master()
            try:
                return fn(session.xenapi)
            except ConnectionRefusedError:
                self._session = None
                if attempt:
                    raise NoMaster(f"the pool master {self.master_name} refuses connections") from None
            except UNREACHABLE as exc:  # the call may have run: not retried
                self._session = None
                raise NoMaster(f"lost the pool master {self.master_name} during a call: "
                               f"{type(exc).__name__}: {exc}") from None
            except XenAPI.Failure as exc:
                if not (exc.details and exc.details[0] == "HOST_IS_SLAVE"):
                    raise
                self._session, self._master_address = None, exc.details[1]
        raise XenlabError("the pool master kept moving")

    def _await_master(self, deadline: float) -> None:
        """Wait until some member answers as master (HA elects one after the old one dies).

        Nothing serves events while there is no master, so this one wait polls logins.
        """
        pause = 0.05
        while True:
            try:
                self._master()
                return
            except NoMaster as exc:
                if time.monotonic() >= deadline:
                    raise WaitTimeout(f"no pool master answered: {exc}") from None
            time.sleep(pause)
            pause = min(pause * 2, 1.0)

    @property
    def master_name(self) -> str:
        return self.names.get(self._master_address, self._master_address)

    # names and references ------------------------------------------------------------
    def _host_refs(self, x, ours: bool = True) -> dict[str, str]:
        """lab host name -> xapi host ref, for the hosts of the pool `x` is logged in to.

        Those of our pool (`ours`) are remembered: they are where to look for its master.
        """
        refs = {self.names[rec["address"]]: ref for ref, rec in x.host.get_all_records().items()
                if rec["address"] in self.names}
        if ours:
            self._members = [self.access.addresses[name] for name in refs]
        return refs

    def _host_ref(self, x, host: str, ours: bool = True) -> str:
        refs = self._host_refs(x, ours)
        if host not in refs:
            raise XenlabError(f"{host} is not a member of the pool of {self.master_name}")
        return refs[host]

    def _vm_ref(self, x, vm: str) -> str:
        refs = [r for r in x.VM.get_by_name_label(vm) if not x.VM.get_is_a_template(r)]
        if not refs:
            raise XenlabError(f"no guest {vm!r} in the pool")
        if len(refs) > 1:
            raise XenlabError(f"{len(refs)} guests are named {vm!r} in the pool")
        return refs[0]

    def _host_live(self, x, ref: str) -> bool:
        try:
            return bool(x.host_metrics.get_live(x.host.get_metrics(ref)))
        except XenAPI.Failure:
            return False

    # waiting -------------------------------------------------------------------------
    def _await(self, x, classes: list[str], done: Callable[[], T | None], what: str, timeout: float) -> T:
        """Re-check `done` whenever xapi reports a change in `classes`, until it is truthy."""
        deadline = time.monotonic() + timeout
        token = x.event_from(classes, "", 0.0)["token"]
        while True:
            value = done()
            if value:
                return value
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise WaitTimeout(f"timed out after {timeout:.0f}s waiting for {what}")
            token = x.event_from(classes, token, min(remaining, EVENT_WAIT_S))["token"]

    def _task(self, x, task: str, what: str, timeout: float = 900.0) -> Any:
        """Wait for an Async task; its value, or its error as XenAPI.Failure."""
        def finished() -> dict | None:
            record = x.task.get_record(task)
            return record if record["status"] != "pending" else None

        record = self._await(x, [f"task/{task}"], finished, what, timeout)
        try:
            x.task.destroy(task)
        except XenAPI.Failure:
            pass
        if record["status"] == "success":
            return task_value(record["result"])
        raise XenAPI.Failure(record["error_info"] or [f"TASK_{record['status'].upper()}", task])

    def _run(self, what: str, call: Callable[[Any], str], timeout: float = 900.0) -> Any:
        """Start an Async call on the master and wait for it."""
        return self._api(lambda x: self._task(x, call(x), what, timeout))

    # hosts ---------------------------------------------------------------------------
    def facts(self, host: str) -> HostFacts:
        session = self._open_on(host)
        try:
            x = session.xenapi
            ref = self._host_ref(x, host, ours=False)
            rec = x.host.get_record(ref)
            metrics = x.host_metrics.get_record(rec["metrics"])
            bridges = sorted({x.network.get_bridge(x.PIF.get_network(pif)) for pif in rec["PIFs"]})
            software = rec["software_version"]
            return HostFacts(
                name=host, address=rec["address"],
                xen_version=software.get("xen") or f"{software.get('product_brand', '')} "
                                                   f"{software.get('product_version', '')}".strip(),
                cpu_features=f"{rec['cpu_info'].get('vendor', '')} {rec['cpu_info'].get('features', '')}".strip(),
                memory_total_mib=int(metrics["memory_total"]) // MiB,
                memory_free_mib=int(x.host.compute_free_memory(ref)) // MiB,
                bridges=tuple(bridges))
        finally:
            session.xenapi.session.logout()

    def _open_on(self, host: str) -> XenAPI.Session:
        """A session on the master of whatever pool `host` is in now (its own, before joining)."""
        address = self._address(host)
        session, _ = self._login(address)
        return session

    def _address(self, host: str) -> str:
        try:
            return self.access.addresses[host]
        except KeyError:
            raise XenlabError(f"no xapi host {host!r} (hosts: {', '.join(self.access.addresses)})") from None

    def host_alive(self, host: str, timeout: float = 5.0) -> bool:
        """Does the host's xapi answer on its management address (as a member or a master)?"""
        try:
            session = self._open(self._address(host), timeout)
        except XenAPI.Failure as exc:
            return bool(exc.details) and exc.details[0] == "HOST_IS_SLAVE"
        except UNREACHABLE:
            return False
        try:
            session.xenapi.session.logout()
        except (XenAPI.Failure, *UNREACHABLE):
            pass
        return True

    # pool ----------------------------------------------------------------------------
    def form_pool(self, members: list[str], settings: PoolSettings) -> PoolInfo:
        """Join every member to the first (pool.join), then the shared NFS SR and HA."""
        if not members:
            raise XenlabError("a pool needs at least one member")
        master = members[0]
        master_address = self._address(master)
        self._drop()
        self._master_address = master_address
        x = self._master().xenapi
        if self._master_address != master_address:
            raise XenlabError(f"{master} is a member of the pool of {self.master_name}, it cannot be a master")
        joined = self._host_refs(x)
        for name in members[1:]:
            if name not in joined:
                self._join(name, master_address)
        return self._api(lambda x: self._settle(x, members, settings))

    def _join(self, name: str, master_address: str) -> None:
        session = self._open_on(name)
        try:
            js = session.xenapi
            task = js.Async.pool.join(master_address, self.access.user, self.access.password)
            try:
                self._task(js, task, f"{name} to join the pool")
            except (XenAPI.Failure, *UNREACHABLE) as exc:
                # a host that joined restarts its xapi as a member: its sessions end
                if isinstance(exc, XenAPI.Failure) and exc.details[:1] != ["HOST_IS_SLAVE"]:
                    raise
            self._api(lambda x: self._await(x, ["host"], lambda: name in self._host_refs(x),
                                            f"{name} to appear in the pool", 120.0))
        except XenAPI.Failure as exc:
            reason = refusal(exc.details)
            if reason is not None:
                raise PoolRefused(name, reason) from None
            raise XenlabError(f"{name} could not join the pool of {self.names.get(master_address)}: "
                              f"{describe(exc)}") from None
        finally:
            try:
                session.xenapi.session.logout()
            except (XenAPI.Failure, *UNREACHABLE):
                pass  # a joined host drops the sessions of its old database

    def _settle(self, x, members: list[str], settings: PoolSettings) -> PoolInfo:
        pool = x.pool.get_all()[0]
        x.pool.set_name_label(pool, settings.name)
        other = x.pool.get_other_config(pool)
        other[SETTINGS_KEY] = json.dumps(asdict(settings))
        x.pool.set_other_config(pool, other)
        sr = self._shared_sr(x, create=True)
        x.pool.set_default_SR(pool, sr)
        if settings.protected and not x.pool.get_ha_enabled(pool):
            self._enable_ha(x, pool, sr, settings)
        return self._pool_info(x)

    def _shared_sr(self, x, create: bool = False) -> str | None:
        """The pool's NFS SR on the lab's export (created, shared by every member, if asked)."""
        for ref, rec in x.SR.get_all_records().items():
            if rec["type"] != "nfs" or not rec["shared"]:
                continue
            config = [x.PBD.get_device_config(p) for p in rec["PBDs"]]
            if any(c.get("server") == self.access.nfs_server and c.get("serverpath") == self.access.nfs_path
                   for c in config):
                return ref
        if not create:
            return None
        master = x.pool.get_master(x.pool.get_all()[0])
        task = x.Async.SR.create(master, {"server": self.access.nfs_server, "serverpath": self.access.nfs_path},
                                 "0", SR_NAME, "the lab's NFS export, shared by every member", "nfs", "user",
                                 True, {})
        return self._task(x, task, "the shared NFS SR to be created")

    def _enable_ha(self, x, pool: str, sr: str, settings: PoolSettings) -> None:
        """HA on the shared SR (its statefile there), declaring hosts dead after the detection timeout."""
        config = {"timeout": str(max(1, round(settings.detection_timeout_s)))}
        self._task(x, x.Async.pool.enable_ha([sr], config), "HA to be enabled")
        hosts = len(x.host.get_all())
        x.pool.set_ha_host_failures_to_tolerate(pool, str(min(1, hosts - 1)))

    def enable_ha(self) -> None:
        settings = self._require_pool().settings
        self._api(lambda x: self._enable_ha(x, x.pool.get_all()[0], self._require_sr(x), settings))

    def disable_ha(self) -> None:
        self._run("HA to be disabled", lambda x: x.Async.pool.disable_ha())

    def ha_enabled(self) -> bool:
        return self._api(lambda x: bool(x.pool.get_ha_enabled(x.pool.get_all()[0])))

    def _require_sr(self, x) -> str:
        sr = self._shared_sr(x)
        if sr is None:
            raise XenlabError(f"the pool has no SR on {self.access.nfs_server}:{self.access.nfs_path}: form it first")
        return sr

    def eject(self, host: str) -> None:
        """Remove `host` from the pool (it comes back as a pool of its own)."""
        self._run(f"{host} to be ejected", lambda x: x.Async.pool.eject(self._host_ref(x, host)))

    def designate_master(self, host: str) -> None:
        """Make `host` the master; the driver follows it (HOST_IS_SLAVE from the old one)."""
        self._run(f"{host} to become master", lambda x: x.Async.pool.designate_new_master(self._host_ref(x, host)))

    def pool(self) -> PoolInfo | None:
        return self._api(self._pool_info)

    def _pool_info(self, x) -> PoolInfo | None:
        pool = x.pool.get_all()[0]
        record = x.pool.get_record(pool)
        raw = record["other_config"].get(SETTINGS_KEY)
        if raw is None:
            return None
        data = json.loads(raw)
        data["protected"] = tuple(data.get("protected", ()))
        settings = PoolSettings(**data)
        refs = self._host_refs(x)
        names = {ref: name for name, ref in refs.items()}
        master = names.get(record["master"], record["master"])
        members = (master,) + tuple(sorted(n for n in refs if n != master))
        sr = self._shared_sr(x)
        path = f"/run/sr-mount/{x.SR.get_uuid(sr)}" if sr else ""
        return PoolInfo(record["name_label"], master, members, path, settings)

    def _require_pool(self) -> PoolInfo:
        pool = self.pool()
        if pool is None:
            raise XenlabError(f"the hosts of {self.master_name} are no xenlab pool yet: form one first (form_pool)")
        return pool

    # guests ----------------------------------------------------------------------------
    def create_vm(self, guest: GuestSpec, host: str) -> VMInfo:
        """VM.create with a full record, a VDI on the shared SR, a VBD and a VIF; then start_on."""
        settings = self._require_pool().settings
        if guest.sends_traffic:  # its agent's figures are read from dom0's console log, xl's road
            raise VerbNotOffered(self.kind, "guest-to-guest traffic")

        def create(x) -> None:
            if [r for r in x.VM.get_by_name_label(guest.name) if not x.VM.get_is_a_template(r)]:
                raise XenlabError(f"a guest named {guest.name!r} already exists in the pool")
            sr = self._require_sr(x)
            vm = x.VM.create(vm_record(guest))
            vdi = x.VDI.create(vdi_record(f"{guest.name} disk", sr, guest.disk_mib * MiB))
            x.VBD.create(vbd_record(vm, vdi))
            network = self._guest_network(x)
            x.VIF.create({"device": "0", "network": network, "VM": vm, "MAC": "", "MTU": "1500",
                          "other_config": {}, "qos_algorithm_type": "", "qos_algorithm_params": {}})
            if guest.name in settings.protected:
                x.VM.set_ha_restart_priority(vm, "restart")
                x.VM.set_order(vm, str(settings.protected.index(guest.name) + 1))

        self._api(create)
        return self.start_vm(guest.name, host)

    def _guest_network(self, x) -> str:
        for ref, rec in x.network.get_all_records().items():
            if rec["bridge"] == GUEST_BRIDGE:
                return ref
        raise XenlabError(f"the pool has no network on bridge {GUEST_BRIDGE}")

    def start_vm(self, vm: str, host: str) -> VMInfo:
        self._run(f"{vm} to start on {host}",
                  lambda x: x.Async.VM.start_on(self._vm_ref(x, vm), self._host_ref(x, host), False, False))
        return self.vm(vm)

    def shutdown_vm(self, vm: str, force: bool = False) -> None:
        if force:
            self._run(f"{vm} to be stopped", lambda x: x.Async.VM.hard_shutdown(self._vm_ref(x, vm)))
        else:
            self._run(f"{vm} to shut down", lambda x: x.Async.VM.clean_shutdown(self._vm_ref(x, vm)))

    def destroy_vm(self, vm: str) -> None:
        def destroy(x) -> None:
            ref = self._vm_ref(x, vm)
            if x.VM.get_power_state(ref) != "Halted":
                self._task(x, x.Async.VM.hard_shutdown(ref), f"{vm} to be stopped")
            disks = [x.VBD.get_VDI(v) for v in x.VM.get_VBDs(ref)
                     if x.VBD.get_type(v) == "Disk" and x.VBD.get_other_config(v).get("owner") == "true"]
            x.VM.destroy(ref)
            for vdi in disks:
                if vdi != NULL_REF:
                    x.VDI.destroy(vdi)

        self._api(destroy)

    def vms(self) -> list[VMInfo]:
        return self._api(self._vms)

    def _vms(self, x) -> list[VMInfo]:
        hosts = {ref: (self.names.get(rec["address"], rec["name_label"]), rec["metrics"])
                 for ref, rec in x.host.get_all_records().items()}
        live = {ref: self._host_live(x, ref) for ref in hosts}
        found = []
        for rec in x.VM.get_all_records().values():
            if rec["is_a_template"] or rec["is_control_domain"] or rec["is_a_snapshot"]:
                continue
            host = rec["resident_on"]
            on = hosts[host][0] if host in hosts else ""
            domid = int(rec["domid"])
            found.append(VMInfo(rec["name_label"], on, vm_state(rec["power_state"], live.get(host, True)),
                                int(rec["memory_static_max"]) // MiB, domid if domid >= 0 else None))
        return sorted(found, key=lambda v: v.name)

    # migration -------------------------------------------------------------------------
    def migrate(self, vm: str, destination: str, on_start: Callable[[], None] | None = None) -> MigrationResult:
        source = self.vm(vm).host
        if source == destination:
            raise XenlabError(f"{vm} is already on {destination}")
        started_at, started = time.time(), time.monotonic()
        if on_start is not None:
            on_start()
        record = MigrationResult(vm, source, destination, started_at, 0.0)
        try:
            self._run(f"{vm} to migrate to {destination}", lambda x: x.Async.VM.pool_migrate(
                self._vm_ref(x, vm), self._host_ref(x, destination), {"live": "true"}))
        except XenAPI.Failure as exc:
            record.ok, record.error = False, describe(exc)
        record.duration_s = time.monotonic() - started
        return record

    def evacuate(self, host: str) -> list[MigrationResult]:
        """host.evacuate: xapi plans where each guest goes and moves them all.

        The host is disabled meanwhile (nothing new lands on it) and enabled again after.
        Each guest's move is timed from the call to the event that shows it elsewhere.
        """
        def run(x) -> list[MigrationResult]:
            ref = self._host_ref(x, host)
            guests = {self._vm_ref(x, v.name): v.name for v in self._vms(x)
                      if v.host == host and v.state in ("running", "paused")}
            started_at, started = time.time(), time.monotonic()
            moved: dict[str, tuple[str, float]] = {}
            x.host.disable(ref)
            try:
                task = x.Async.host.evacuate(ref)

                def finished():
                    for vm in guests:
                        if vm not in moved and x.VM.get_resident_on(vm) != ref:
                            moved[vm] = (x.VM.get_resident_on(vm), time.monotonic() - started)
                    status = x.task.get_status(task)
                    return status != "pending" and status

                status = self._await(x, [f"task/{task}", "vm"], finished, f"{host} to be evacuated", 900.0)
                error = "" if status == "success" else describe(XenAPI.Failure(x.task.get_error_info(task)))
                x.task.destroy(task)
            finally:
                x.host.enable(ref)
            names = {r: n for n, r in self._host_refs(x).items()}
            results = []
            for vm, name in guests.items():
                target, seconds = moved.get(vm, (ref, time.monotonic() - started))
                result = MigrationResult(name, host, names.get(target, target), started_at, seconds)
                if target == ref:
                    result.ok, result.error = False, error or f"{name} is still on {host}"
                results.append(result)
            return results

        return self._api(run)

    # failover --------------------------------------------------------------------------
    def recover(self, dead_host: str, fault_at: float | None = None, observer: Observer | None = None,
                timeout: float = 600) -> FailoverResult:
        """Wait for xapi's HA to declare `dead_host` dead and restart its protected guests.

        The driver does not restart anything itself: HA does. What it reports comes from
        xapi's own records: detection and fencing from the HA_HOST_FAILED message (xHA
        declares a host dead only once it has fenced itself), where each guest restarted.
        The observer is not needed (xapi knows when a host died); the guests' recovery is
        measured by the runner from their heartbeats.
        """
        fault_at = time.time() if fault_at is None else fault_at
        result = FailoverResult(dead_host, fault_at)
        deadline = time.monotonic() + timeout

        def survey(x) -> tuple[bool, list[str]]:
            pool = self._pool_info(x)
            if pool is None:
                raise XenlabError("the hosts are no xenlab pool: nothing to recover")
            return bool(x.pool.get_ha_enabled(x.pool.get_all()[0])), self._victims(x, dead_host, pool.settings,
                                                                                  fault_at)
        try:
            ha, victims = self._api(survey)
        except (NoMaster, *UNREACHABLE):
            self._session = None
            self._await_master(deadline)  # the master itself died: wait for HA to elect another
            ha, victims = self._api(survey)
        if not ha:
            result.ok, result.error = False, ("HA is off in this pool, so nothing restarts guests: protect "
                                              "guests in the pool settings to have it enabled")
            return result
        try:
            failed_at = self._until_declared_dead(dead_host, fault_at, deadline)
            result.detected_after_s = result.fenced_after_s = round(max(0.0, failed_at - fault_at), 3)
            restarted = self._until_restarted(dead_host, victims, deadline)
        except WaitTimeout as exc:
            result.ok, result.error = False, str(exc)
            return result
        for vm, host in restarted.items():
            result.restarted[vm] = host
        missing = [vm for vm in victims if vm not in restarted]
        if missing:
            result.ok, result.error = False, f"HA did not restart {', '.join(missing)}"
        return result

    def _victims(self, x, dead_host: str, settings: PoolSettings, fault_at: float) -> list[str]:
        """Protected guests the failure of `dead_host` hit: still on it, or restarted since the fault."""
        dead = self._host_refs(x).get(dead_host)
        hit = []
        for name in settings.protected:
            refs = [r for r in x.VM.get_by_name_label(name) if not x.VM.get_is_a_template(r)]
            if not refs:
                continue
            rec = x.VM.get_record(refs[0])
            still_there = rec["resident_on"] == dead
            restarted = rec["power_state"] == "Running" and \
                xapi_time(x.VM_metrics.get_start_time(rec["metrics"])) >= fault_at - 1.0  # xapi times: 1 s
            if still_there or restarted:
                hit.append(name)
        return hit

    def _until_declared_dead(self, dead_host: str, fault_at: float, deadline: float) -> float:
        """When xapi declared the host dead after the fault (HA_HOST_FAILED, else its metrics' update).

        xapi times have a resolution of one second, hence the second of slack.
        """
        def declared(x) -> float | None:
            ref = self._host_ref(x, dead_host)
            if self._host_live(x, ref):
                return None
            uuid = x.host.get_uuid(ref)
            stamps = [xapi_time(m["timestamp"]) for m in x.message.get_all_records().values()
                      if m["name"] == "HA_HOST_FAILED" and m["obj_uuid"] == uuid
                      and xapi_time(m["timestamp"]) >= fault_at - 1.0]
            if stamps:
                return max(stamps)
            return xapi_time(x.host_metrics.get_last_updated(x.host.get_metrics(ref)))

        return self._await_across_masters(["host_metrics", "message"], declared,
                                          f"xapi to declare {dead_host} dead", deadline)

    def _until_restarted(self, dead_host: str, victims: list[str],
                         deadline: float) -> dict[str, str]:
        """guest -> host once every victim runs on a live member but `dead_host`."""
        def restarted(x) -> dict[str, str] | None:
            refs = self._host_refs(x)
            names = {ref: name for name, ref in refs.items()}
            found = {}
            for vm in victims:
                rec = x.VM.get_record(self._vm_ref(x, vm))
                host = names.get(rec["resident_on"])
                if rec["power_state"] != "Running" or host in (None, dead_host) or \
                        not self._host_live(x, rec["resident_on"]):
                    return None
                found[vm] = host
            return found or {}

        if not victims:
            return {}
        return self._await_across_masters(["vm", "host_metrics"], restarted,
                                          f"HA to restart {', '.join(victims)}", deadline)

    def _await_across_masters(self, classes: list[str], check: Callable[[Any], T | None], what: str,
                              deadline: float) -> T:
        """`_await` on the master, starting over on the next master if this one dies meanwhile."""
        while True:
            try:
                return self._api(lambda x: self._await(x, classes, lambda: check(x), what,
                                                       max(0.0, deadline - time.monotonic())))
            except (NoMaster, *UNREACHABLE):
                self._session = None
                self._await_master(deadline)


def vdi_record(name: str, sr: str, size_bytes: int) -> dict[str, Any]:
    """A VDI.create record: a user disk of `size_bytes` on `sr`."""
    return {"name_label": name, "name_description": "", "SR": sr, "virtual_size": str(size_bytes), "type": "user",
            "sharable": False, "read_only": False, "other_config": {}, "xenstore_data": {}, "sm_config": {},
            "tags": []}


def vbd_record(vm: str, vdi: str, userdevice: str = "0") -> dict[str, Any]:
    """A VBD.create record plugging `vdi` into `vm` as its (bootable) disk."""
    return {"VM": vm, "VDI": vdi, "userdevice": userdevice, "bootable": True, "mode": "RW", "type": "Disk",
            "empty": False, "other_config": {"owner": "true"}, "qos_algorithm_type": "", "qos_algorithm_params": {}}


def boot_fields(guest_type: str) -> dict[str, Any]:
    """How xapi is told a guest's type: `domain_type`, with the boot fields that go with it
    (HVM_boot_policy empty for pv and pvh, "BIOS order" for hvm, as xapi derives them; a
    PV bootloader for the PV-booted types)."""
    if guest_type == "hvm":
        return {"domain_type": "hvm", "HVM_boot_policy": "BIOS order", "HVM_boot_params": {"order": "c"},
                "PV_bootloader": "", "platform": {"acpi": "1", "apic": "true", "pae": "true", "nx": "true",
                                                  "viridian": "false"}}
    return {"domain_type": guest_type, "HVM_boot_policy": "", "HVM_boot_params": {}, "PV_bootloader": "pygrub",
            "platform": {}}


def vm_record(guest: GuestSpec) -> dict[str, Any]:
    """A complete VM.create record (xapi requires every constructor field) for a guest of its type."""
    memory = str(guest.memory_mib * MiB)
    return {
        "name_label": guest.name, "name_description": "created by xenlab", "user_version": "1",
        "is_a_template": False, "affinity": NULL_REF,
        "memory_static_max": memory, "memory_dynamic_max": memory, "memory_dynamic_min": memory,
        "memory_static_min": memory, "VCPUs_params": {}, "VCPUs_max": str(guest.vcpus),
        "VCPUs_at_startup": str(guest.vcpus), "actions_after_shutdown": "destroy",
        "actions_after_reboot": "restart", "actions_after_crash": "restart",
        "PV_kernel": "", "PV_ramdisk": "", "PV_args": "", "PV_bootloader_args": "", "PV_legacy_args": "",
        "PCI_bus": "",
        "other_config": {"xenlab_heartbeat": str(guest.heartbeat).lower(), "xenlab_writer": str(guest.writer).lower()},
        "recommendations": "", **boot_fields(guest.type),
    }
