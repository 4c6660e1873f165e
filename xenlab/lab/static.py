"""Static labs (`backend: static`): hosts that exist already, such as a rack of real servers.

xenlab boots nothing here. It reaches each host's dom0 over SSH at the address the lab
file gives (the host key pinned by the lab's known_hosts file), powers it through its
BMC over IPMI (`xenlab.lab.ipmi`), and inflicts network faults as nftables rules in dom0
(`xenlab.lab.firewall`), each undone on heal, at the end of every run, by `down`, at
exit, and by a dead-man timer in dom0 if xenlab dies without undoing it.

What a static lab cannot do is declared in its capabilities and refused before a
scenario starts: checkpoints (a real host has no snapshot of its RAM and disks), freeze,
link_down and impair (nothing pulls a real cable or shapes a real wire), faults on the
services node (it may be shared infrastructure), and power faults on a lab whose hosts
do not all have a BMC.

Its run directory holds only the pool's SSH key and the hosts' public keys (for the xl
driver's dom0-to-dom0 trust); no password is ever written there or anywhere else.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import paramiko

from ..errors import NotMeasurable, XenlabError
from ..metrics import IntegrityReport
from ..plan import NetworkPlan
from ..recipe_facts import GUEST_TYPES, runnable_guest_types
from ..report.inventory import collect_inventory
from ..results import HostInventory
from ..spec import SR_PATH, IpmiSpec, LabSpec, SecretSource, SshSpec, lab_number, resolve_path
from ..waiting import Progress, StopWaiting, quiet, wait_for
from . import firewall
from .contract import AWAITING, Capabilities, XapiAccess, not_supported
from .host import parse_virt_caps
from .ipmi import IpmiPower, IpmiTarget
from .parallel import in_parallel
from .rundir import RunDir
from .ssh import RemoteShell, SSHAccess
from .xapi_login import XapiLogin, logout, pool_inventory, virt_caps_of

if TYPE_CHECKING:
    from .static_faults import StaticFaults

ACCEL = "static"
POWER_FAULTS = ("power_cut", "reset")
FIREWALL_FAULTS = ("partition", "storage_loss")


def known_host_key(known_hosts: Path, address: str, port: int) -> str:
    """The pinned public key (`type base64`) of `address:port` in an OpenSSH known_hosts file."""
    keys = paramiko.HostKeys(str(known_hosts))
    name = address if port == 22 else f"[{address}]:{port}"
    entry = keys.lookup(name)
    if not entry:
        raise XenlabError(f"{known_hosts} has no key for {name}: add the host's key (ssh-keyscan from a trusted "
                          "network, then check its fingerprint on the host's console)")
    key_type = next(iter(entry.keys()))
    return f"{key_type} {entry[key_type].get_base64()}"


def password_source(source: SecretSource, base: Path, what: str = "BMC") -> Callable[[], str]:
    """How to read a password when it is needed (never kept in a file xenlab writes)."""
    if source.password_env is not None:
        variable = source.password_env

        def from_env() -> str:
            value = os.environ.get(variable)
            if not value:
                raise XenlabError(f"the environment variable {variable} (a {what} password) is not set")
            return value
        return from_env
    if source.password_file is None:
        raise XenlabError(f"the lab file says nowhere where the {what} password is (password_file or password_env)")
    path = resolve_path(source.password_file, base)

    def from_file() -> str:
        try:
            lines = path.read_text().splitlines()
        except OSError as exc:
            raise XenlabError(f"cannot read the {what} password file {path}: {exc.strerror}") from None
        if not lines or not lines[0]:
            raise XenlabError(f"the {what} password file {path} is empty")
        return lines[0]
    return from_file


class StaticHost(RemoteShell):
    """A host (or the services node) of a static lab: SSH to its dom0 (not required of an
    xapi host), xapi on an XCP-ng host, power through its BMC."""

    def __init__(self, lab: StaticLab, name: str, role: str, ssh: SshSpec | None, address: str,
                 ipmi: IpmiSpec | None):
        self.lab = lab
        self.name = name
        self.role = role
        self.ssh_spec = ssh
        self._address = address
        self.bmc = IpmiPower(IpmiTarget(name, ipmi.address, ipmi.port, ipmi.user,
                                        password_source(ipmi, lab.base))) if ipmi is not None else None
        self._ssh: SSHAccess | None = None
        self.virt_caps: list[str] = []

    def __repr__(self) -> str:
        return f"<StaticHost {self.name} of lab {self.lab.name}>"

    @property
    def capabilities(self) -> frozenset[str]:  # type: ignore[override]
        """A shell where the lab file gives `ssh:`, power where it gives `ipmi:`; never a
        console or a link (xenlab reads no serial-over-LAN and controls no switch)."""
        return frozenset({"shell"} if self.ssh_spec is not None else set()) | (
            {"power"} if self.bmc is not None else set())

    def lacks(self, capability: str) -> str:
        return {"shell": "the lab file gives it no `ssh:` (xenlab reaches it through xapi only)",
                "power": "the lab file gives it no `ipmi:` BMC",
                "console": "xenlab does not read a real server's serial-over-LAN console",
                "link": "xenlab controls no switch port of a real server (a `partition` fault is a dom0 firewall rule)",
                }.get(capability, super().lacks(capability))

    def run(self, command: str, timeout: float = 60, input: bytes | None = None):
        if self.ssh_spec is None:
            raise self.unsupported("shell")
        return super().run(command, timeout, input)

    def succeed(self, command: str, timeout: float = 60, input: bytes | None = None) -> str:
        if self.ssh_spec is None:
            raise self.unsupported("shell")
        return super().succeed(command, timeout, input)

    def fail(self, command: str, timeout: float = 60) -> str:
        if self.ssh_spec is None:
            raise self.unsupported("shell")
        return super().fail(command, timeout)

    # -- SSH -----------------------------------------------------------------------------
    def _require_ssh(self) -> SshSpec:
        if self.ssh_spec is None:
            raise XenlabError(f"{self.name} of lab {self.lab.name} has no `ssh:` in the lab file: xenlab reaches it "
                              "through xapi only")
        return self.ssh_spec

    @property
    def has_shell(self) -> bool:
        """Can xenlab run commands on it (an XCP-ng host of an xapi lab may be reached through xapi only)?"""
        return self.ssh_spec is not None

    def host_key(self) -> str:
        spec = self._require_ssh()
        if self.lab.known_hosts is None:
            raise XenlabError(f"lab {self.lab.name} has no known_hosts file to pin {self.name}'s SSH key")
        return known_host_key(self.lab.known_hosts, spec.host, spec.port)

    @property
    def ssh(self) -> SSHAccess:
        if self._ssh is None:
            spec = self._require_ssh()
            self._ssh = SSHAccess(self.name, spec.port, str(resolve_path(spec.key_file, self.lab.base)),
                                  self.host_key(), address=spec.host, user=spec.user)
        return self._ssh

    @property
    def ssh_port(self) -> int:
        return self._require_ssh().port

    def ssh_argv(self, *command: str) -> list[str]:
        """The system `ssh` client's command line to this host, with the lab file's key and its
        known_hosts (an interactive shell for `xenlab ssh h1`)."""
        if self.ssh_spec is None:
            raise self.unsupported("shell")
        spec = self.ssh_spec
        if self.lab.known_hosts is None:
            raise XenlabError(f"lab {self.lab.name} has no known_hosts file to pin {self.name}'s SSH key")
        return ["ssh", "-i", str(resolve_path(spec.key_file, self.lab.base)), "-p", str(spec.port),
                "-o", "IdentitiesOnly=yes", "-o", f"UserKnownHostsFile={self.lab.known_hosts}",
                "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes" if command else "BatchMode=no",
                f"{spec.user}@{spec.host}", *command]

    def close(self) -> None:
        self.forget_connections()

    def address(self, network: str | None = None) -> str:
        """Its address on the pool network (a static lab has one)."""
        return self._address

    # -- power ---------------------------------------------------------------------------
    def _require_bmc(self) -> IpmiPower:
        if self.bmc is None:
            raise self.unsupported("power")
        return self.bmc

    def process_alive(self) -> bool:
        """Is the machine powered (its BMC says so; without a BMC: does its SSH answer)?"""
        if self.bmc is None:
            if self.ssh_spec is None and self.lab.xapi is not None:
                return self.lab.xapi.answer(self._address, timeout=10) is None
            try:
                return self.run("true", timeout=10).ok
            except XenlabError:
                return False
        return self.bmc.is_on()

    def power(self, action: str) -> None:
        """off (the plug), on, reset (the button), cycle, through the host's BMC."""
        bmc = self._require_bmc()
        if action not in ("off", "on", "reset", "cycle"):
            raise XenlabError(f"a real server's BMC powers it off, on, reset or cycle, not {action!r} "
                              "(freeze and thaw pause a QEMU host's vCPUs)")
        if action in ("off", "reset", "cycle"):
            self.forget_connections()
        bmc.request(action, wait=60 if action in ("on", "off") else 0)

    def run_state(self) -> str:
        try:
            return "running" if self.process_alive() else "off"
        except XenlabError:
            return "unreachable"

    # -- readiness -----------------------------------------------------------------------
    def toolstack_check(self) -> str:
        if self.role != "xen":
            return "true"
        return "xl info" if self.lab.spec.static_toolstack == "xl" else "xe host-list --minimal"

    def wait_ready(self, timeout: float = 300, progress=lambda host, stage: None) -> dict[str, float]:
        """SSH answers, then the toolstack: seconds per stage (from the call)."""
        started = time.monotonic()
        deadline = started + timeout
        stages: dict[str, float] = {}
        last = [""]

        def answers() -> bool:
            try:
                return self.run("true", timeout=10).ok
            except XenlabError as exc:
                last[0] = str(exc)
                return False

        if self.ssh_spec is not None:
            progress(self.name, AWAITING["ssh"])
            spec = self.ssh_spec
            wait_for(answers, f"{self.name}: SSH ({spec.user}@{spec.host}:{spec.port})",
                     max(1.0, deadline - time.monotonic()), 1.0, lambda: last[0])
            stages["ssh"] = round(time.monotonic() - started, 2)
        xapi = self.lab.xapi
        if xapi is not None and self.role == "xen":
            progress(self.name, AWAITING["toolstack"])

            def xapi_answers() -> bool:
                try:
                    problem = xapi.answer(self._address)
                except XenlabError as exc:  # a refused login or certificate: waiting cannot mend it
                    raise StopWaiting(str(exc)) from None
                last[0] = problem or ""
                return problem is None

            wait_for(xapi_answers, f"{self.name}: xapi ({xapi.url_for(self._address)})",
                     max(1.0, deadline - time.monotonic()), 2.0, lambda: last[0])
            self.virt_caps = self.lab.xapi_virt_caps(self)
            stages["toolstack"] = round(time.monotonic() - started, 2)
            progress(self.name, AWAITING["ready"])
            return stages
        check = self.toolstack_check()
        progress(self.name, AWAITING["toolstack"])

        def works() -> bool:
            result = self.run(check, timeout=60)
            last[0] = (result.stdout + result.stderr)[-800:]
            if result.ok and check == "xl info":
                self.virt_caps = parse_virt_caps(result.stdout)
            return result.ok

        wait_for(works, f"{self.name}: toolstack (`{check}`)", max(1.0, deadline - time.monotonic()), 2.0,
                 lambda: last[0])
        stages["toolstack"] = round(time.monotonic() - started, 2)
        progress(self.name, AWAITING["ready"])
        return stages


@dataclass(frozen=True)
class StaticPlan:
    """What the drivers read of a lab's plan: its number (guest MACs) and its pool network."""

    lab: str
    number: int
    networks: list[NetworkPlan]


class StaticLab:
    """A lab of hosts that exist already (a LabBackend)."""

    def __init__(self, spec: LabSpec, spec_path: str = "", run: RunDir | None = None):
        if spec.backend != "static":
            raise XenlabError(f"lab {spec.name} is a {spec.backend} lab, not a static lab")
        self.spec = spec
        self.spec_path = spec_path
        self.name = spec.name
        self.base = Path(spec_path).resolve().parent if spec_path else Path.cwd()
        # the spec refuses a lab without known_hosts unless it is an xapi lab reaching nothing over SSH
        self.known_hosts = resolve_path(spec.known_hosts, self.base) if spec.known_hosts else None
        self.xapi = (XapiLogin.of(spec, self.base, password_source(spec.xapi, self.base, "xapi"))
                     if spec.static_toolstack == "xapi" and spec.xapi is not None else None)
        first = next(iter(spec.networks))
        subnet = spec.networks[first].subnet
        assert subnet is not None
        self.plan = StaticPlan(spec.name, lab_number(spec.name), [NetworkPlan(first, 0, subnet)])
        self.run = run or RunDir.for_lab(f"{spec.name}.static")  # not a stray for `down --all`: see stray_lab_dirs
        self.machines: dict[str, StaticHost] = {}
        for name, host in spec.hosts.items():
            assert host.address is not None  # and ssh, unless the lab is an xapi lab: the spec checks both
            self.machines[name] = StaticHost(self, name, "xen", host.ssh, host.address, host.ipmi)
        services = spec.services
        if services is not None and services.ssh is not None and services.address is not None:
            self.machines[services.name] = StaticHost(self, services.name, "services", services.ssh,
                                                      services.address, None)
        self.bringup_stages: dict[str, dict[str, float]] = {}
        self._faults: StaticFaults | None = None
        self._at_down: dict[str, Callable[[], None]] = {}

    # -- what it is ------------------------------------------------------------------------
    @property
    def capabilities(self) -> Capabilities:
        # firewall faults are nftables rules in dom0: Debian's; XCP-ng's dom0 (CentOS-based) has iptables only
        xl = self.spec.static_toolstack == "xl"
        kinds = list(FIREWALL_FAULTS) if xl else []
        if all(h.bmc is not None for h in self.hosts):
            kinds = list(POWER_FAULTS) + kinds
        return Capabilities(toolstack=self.spec.static_toolstack, fault_kinds=tuple(kinds), checkpoints=False,
                            integrity_measurable=xl and self.services is not None, services_faults=False, poll_s=1.0,
                            outlives_process=False, guest_types=self._common_guest_types(),
                            heartbeats_collected=self.services is not None)

    def _common_guest_types(self) -> tuple[str, ...]:
        runs = [self.runs(h.name) for h in self.hosts]
        return tuple(t for t in GUEST_TYPES if all(t in r for r in runs))

    def runs(self, host: str) -> tuple[str, ...]:
        """The lab file's guest types, as far as the host's Xen (virt_caps, read at up) allows."""
        return runnable_guest_types(tuple(self.spec.guest_types), self.host(host).virt_caps)

    @property
    def hosts(self) -> list[StaticHost]:
        return [h for h in self.machines.values() if h.role == "xen"]

    @property
    def services(self) -> StaticHost | None:
        return next((h for h in self.machines.values() if h.role == "services"), None)

    def host(self, name: str) -> StaticHost:
        try:
            return self.machines[name]
        except KeyError:
            raise XenlabError(f"no host {name!r} in lab {self.name} (hosts: {', '.join(self.machines)})") from None

    @property
    def accel(self) -> str:
        return ACCEL

    # -- up and down -------------------------------------------------------------------------
    def up(self, progress: Progress = quiet, accel: str | None = None, tied: bool = False,
           timeout: float = 600) -> dict[str, dict[str, float]]:
        """Check every host answers (SSH, toolstack, BMC), pin their keys for the pool, and
        remove any fault a dead run left behind. Nothing is booted."""
        self.run.create()
        keys = self.run.root / "keys"
        if self.spec.static_toolstack == "xl":
            for host in self.hosts:  # the xl driver's dom0-to-dom0 trust pins these
                (keys / f"host-{host.name}.pub").write_text(host.host_key() + "\n")
        for host in self.hosts:
            if host.bmc is not None:
                progress(host.name, f"BMC {host.bmc.target.address}:{host.bmc.target.port}: power "
                                    f"{host.bmc.state()}")
        deadline = time.monotonic() + timeout
        self.bringup_stages = dict(in_parallel(self.machines.values(), lambda h: (h.name, h.wait_ready(
            max(1.0, deadline - time.monotonic()), lambda name, stage: progress(name, stage)))))
        for host in self.hosts:
            if self.spec.static_toolstack == "xl" and host.run("command -v nft", timeout=30).ok:
                left = firewall.leftover(host)
                if left:
                    progress(host.name, f"removing nftables rules a previous run left ({', '.join(left)})")
                firewall.clear_all(host)
        return self.bringup_stages

    def on_down(self, what: str, stop: Callable[[], None]) -> None:
        """Something a driver started on these hosts that must not outlive the run (the
        heartbeat collector on the services node, a listener on a real network): `down`
        stops it, once per `what`."""
        self._at_down[what] = stop

    def down(self) -> list[int]:
        """Heal what is still inflicted, stop what drivers started here (`on_down`), leave the
        hosts as they are, forget the run's keys."""
        errors = self.faults().heal_all() if self._faults is not None else []
        for what, stop in list(self._at_down.items()):
            try:
                stop()
                del self._at_down[what]
            except XenlabError as exc:
                errors.append(f"stopping the {what}: {exc}")
        for host in self.machines.values():
            host.close()
        shutil.rmtree(self.run.root, ignore_errors=True)
        if errors:
            raise XenlabError("; ".join(errors))
        return []

    # -- checkpoints: none -------------------------------------------------------------------
    def checkpoint_tags(self) -> list[str]:
        return []

    def checkpoint_save(self, tag: str) -> float:
        raise not_supported(self.name, "checkpoints", "static")

    def checkpoint_restore(self, tag: str) -> float:
        raise not_supported(self.name, "checkpoints", "static")

    # -- drivers' parts --------------------------------------------------------------------
    def inventory(self) -> list[HostInventory]:
        if self.xapi is None:
            return in_parallel(self.hosts, lambda host: collect_inventory(host, ACCEL))
        return in_parallel(self.hosts, self._xapi_inventory)

    def _xapi_inventory(self, host: StaticHost) -> HostInventory:
        """A host as its pool's xapi reports it (host, host_metrics and PIF records)."""
        assert self.xapi is not None
        session = self.xapi.master_session([host.address()])
        try:
            return pool_inventory(session.xenapi, {host.address(): host.name}, ACCEL)[0]
        finally:
            logout(session)

    def xapi_virt_caps(self, host: StaticHost) -> list[str]:
        """What guests the host's Xen runs, from xapi's host.capabilities ([] if it does not say)."""
        assert self.xapi is not None
        session = self.xapi.master_session([host.address()])
        try:
            x = session.xenapi
            ref = next((r for r in x.host.get_all() if x.host.get_address(r) == host.address()), None)
            return virt_caps_of(x.host.get_capabilities(ref)) if ref else []
        finally:
            logout(session)

    def xapi_access(self) -> XapiAccess:
        """How the XAPI driver reaches this lab's pool (the password read now, from its file or variable)."""
        if self.xapi is None:
            raise XenlabError(f"static lab {self.name} has toolstack {self.spec.static_toolstack}, not xapi")
        services = self.spec.services
        assert services is not None and services.address is not None  # the spec requires them for xapi
        return XapiAccess(addresses={h.name: h.address() for h in self.hosts}, url_for=self.xapi.url_for,
                          user=self.xapi.spec.user, password=self.xapi.password_source(),
                          nfs_server=services.address, nfs_path=services.nfs_export,
                          ssl_context=self.xapi.ssl_context())

    def observer(self) -> UnobservedGuests | None:
        """Its own observer where nothing collects heartbeats (no services node xenlab logs in
        to); None: the shared observer reads them on its services node, as on a QEMU lab."""
        return UnobservedGuests(self) if self.services is None else None

    def faults(self) -> StaticFaults:
        if self._faults is None:
            from .static_faults import StaticFaults  # the faults module reads this one's hosts

            self._faults = StaticFaults(self)
        return self._faults

    @property
    def shared_sr(self) -> str:
        return self.spec.services.nfs_export if self.spec.services else SR_PATH

    def status(self, probe: bool = False) -> dict:
        """Where each machine is reached. With `probe`, each host is asked, in parallel: is it
        powered (its BMC), does SSH answer, what does Xen say it runs, and which xenlab
        firewall tables a dead run may have left (`up` removes them)."""
        machines = [{
            "name": h.name, "role": h.role,
            "ssh": ({"host": h.ssh_spec.host, "port": h.ssh_spec.port, "user": h.ssh_spec.user}
                    if h.ssh_spec is not None else None),
            **({"xapi": self.xapi.url_for(h.address())} if self.xapi is not None and h.role == "xen" else {}),
            "addresses": {self.plan.networks[0].name: h.address()},
            **({"bmc": {"interface": "ipmi", "address": h.bmc.target.address, "port": h.bmc.target.port,
                        "user": h.bmc.target.user}} if h.bmc is not None else {}),
        } for h in self.machines.values()]
        if probe:
            for entry, found in zip(machines, in_parallel(self.machines.values(), probe_host), strict=True):
                entry.update(found)
        return {"schema": "xenlab.status/1", "lab": self.name, "backend": "static", "run_dir": str(self.run.root),
                "machines": machines, "checkpoints": []}


def probe_host(host: StaticHost) -> dict:
    """What a host says of itself now; every failure is reported, none raised."""
    found: dict = {"power": None, "ssh_answers": False, "virt_caps": [], "firewall_left": []}
    if host.bmc is not None:
        try:
            found["power"] = host.bmc.state()
        except XenlabError as exc:
            found["power"] = f"unknown ({exc})"
    xapi = host.lab.xapi if host.role == "xen" else None
    if xapi is not None:
        try:
            problem = xapi.answer(host.address())
        except XenlabError as exc:
            problem = str(exc)
        found["xapi_answers"] = problem is None
        if problem is not None:
            found["toolstack_error"] = problem
        else:
            try:
                found["virt_caps"] = host.lab.xapi_virt_caps(host)
            except XenlabError as exc:
                found["toolstack_error"] = str(exc)
    if host.ssh_spec is not None:
        try:
            found["ssh_answers"] = host.run("true", timeout=15).ok
        except XenlabError as exc:
            found["ssh_error"] = str(exc)
    if found["ssh_answers"] and host.role == "xen" and xapi is None:
        info = host.run("xl info", timeout=60)
        found["virt_caps"] = parse_virt_caps(info.stdout) if info.ok else []
        if not info.ok:
            found["toolstack_error"] = f"`xl info` exited {info.status}: {(info.stderr or info.stdout).strip()[-300:]}"
        if host.run("command -v nft", timeout=30).ok:
            found["firewall_left"] = firewall.leftover(host)
    answers = found["xapi_answers"] if xapi is not None and host.ssh_spec is None else found["ssh_answers"]
    found["state"] = ("running" if answers else
                      "off" if found["power"] == "off" else "unreachable")
    return found


class UnobservedGuests:
    """The observer of a static xapi lab whose services node xenlab cannot log in to: nothing
    collects its guests' heartbeats, so asking for them is an error, not an empty series."""

    def __init__(self, lab: StaticLab):
        self.lab = lab

    def heartbeats(self, vm: str, since: float | None = None) -> list[tuple[int, float]]:
        raise XenlabError(f"{vm}'s heartbeats are not collected on static lab {self.lab.name}: give its services node "
                          "`ssh:` so xenlab runs its heartbeat collector there, or create guests with "
                          "`heartbeat: false`")

    def verify_disk(self, vm: str) -> IntegrityReport:
        raise NotMeasurable(f"{vm}'s disk integrity is not measured on static lab {self.lab.name} with toolstack "
                            "xapi: xenlab's xapi guests start from an empty disk")
