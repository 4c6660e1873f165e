"""How a static lab reaches its hosts' xapi (XCP-ng, XenServer): endpoints, TLS trust, login.

A host's xapi answers at its pool address (https, port 443) unless the lab file gives it
an `api:` endpoint (an SSH tunnel, a simulator on 127.0.0.1). xapi names hosts by their
pool address (a member answers a login with HOST_IS_SLAVE and its master's address), so
URLs are looked up by that address. The password is read from its file or environment
variable each time a session is opened, never kept in a file or shown in a message.
XCP-ng's certificates are self-signed per host: with `ca_file` naming them, the
certificate chain identifies the host and the name in it is not compared with the
address xenlab dialled (which is often an IP address or a tunnel's 127.0.0.1).
"""

from __future__ import annotations

import http.client
import ssl
import xmlrpc.client
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import XenAPI

from ..errors import XenlabError
from ..results import HostInventory
from ..spec import LabSpec, XapiLoginSpec, resolve_path

ORIGINATOR = "xenlab-static"
API_VERSION = "2.21"
MiB = 1024 * 1024
UNREACHABLE = (OSError, http.client.HTTPException, xmlrpc.client.ProtocolError)


class TimedTransport(xmlrpc.client.Transport):
    """XML-RPC over HTTP with a timeout, so a dead host cannot hang a call forever."""

    def __init__(self, timeout: float):
        super().__init__()
        self.timeout = timeout

    def make_connection(self, host):
        connection = super().make_connection(host)
        connection.timeout = self.timeout
        return connection


class TimedSafeTransport(xmlrpc.client.SafeTransport):
    """XML-RPC over HTTPS with a timeout and the lab's TLS trust."""

    def __init__(self, timeout: float, context: ssl.SSLContext | None):
        super().__init__(context=context)
        self.timeout = timeout

    def make_connection(self, host):
        connection = super().make_connection(host)
        connection.timeout = self.timeout
        return connection


def transport_for(url: str, timeout: float, context: ssl.SSLContext | None) -> xmlrpc.client.Transport:
    return TimedSafeTransport(timeout, context) if url.startswith("https:") else TimedTransport(timeout)


@dataclass
class XapiLogin:
    """A static lab's way into its hosts' xapi."""

    spec: XapiLoginSpec
    password_source: Callable[[], str] = field(repr=False)
    endpoints: dict[str, tuple[str, int | None]]  # pool address -> (host, port) dialled instead
    ca_file: Path | None = None
    _context: ssl.SSLContext | None = field(default=None, init=False, repr=False)

    @classmethod
    def of(cls, lab: LabSpec, base: Path, password_source: Callable[[], str]) -> XapiLogin:
        assert lab.xapi is not None  # the spec refuses toolstack xapi without it
        endpoints = {host.address: (host.api.host, host.api.port) for host in lab.hosts.values()
                     if host.api is not None and host.address is not None}
        ca = resolve_path(lab.xapi.ca_file, base) if lab.xapi.ca_file else None
        return cls(lab.xapi, password_source, endpoints, ca)

    @property
    def default_port(self) -> int:
        return 443 if self.spec.scheme == "https" else 80

    def url_for(self, address: str) -> str:
        host, port = self.endpoints.get(address, (address, None))
        shown = f"[{host}]" if ":" in host else host
        return f"{self.spec.scheme}://{shown}:{port or self.default_port}/"

    def ssl_context(self) -> ssl.SSLContext | None:
        """The lab's TLS trust, built once (every session of a run shares it)."""
        if self.spec.scheme != "https":
            return None
        if self._context is None:
            if self.ca_file is None:
                self._context = ssl.create_default_context()
            else:
                try:
                    context = ssl.create_default_context(cafile=str(self.ca_file))
                except (OSError, ssl.SSLError) as exc:
                    raise XenlabError(f"cannot use {self.ca_file} as xapi's CA file: {exc}") from None
                context.check_hostname = False  # the pinned certificates identify the hosts (see the module doc)
                self._context = context
        return self._context

    def open(self, address: str, timeout: float = 30.0) -> XenAPI.Session:
        """A logged-in session on the xapi at `address` (XenAPI.Failure HOST_IS_SLAVE on a member)."""
        url = self.url_for(address)
        session = XenAPI.Session(url, transport=transport_for(url, timeout, self.ssl_context()))
        session.xenapi.login_with_password(self.spec.user, self.password_source(), API_VERSION, ORIGINATOR)
        return session

    def answer(self, address: str, timeout: float = 15.0) -> str | None:
        """None if xapi at `address` answers (as a master, or as a member naming its master), else
        why not (a host still booting); a refused login or certificate is raised: waiting cannot mend it."""
        try:
            session = self.open(address, timeout)
        except XenAPI.Failure as exc:
            details = exc.details if isinstance(exc.details, list) else [str(exc.details)]
            if details and details[0] == "HOST_IS_SLAVE":
                return None
            raise XenlabError(f"xapi at {self.url_for(address)} refused the login of {self.spec.user!r}: "
                              f"{details[0] if details else exc} (check the password in "
                              f"{self.spec.password_file or '$' + str(self.spec.password_env)})") from None
        except ssl.SSLCertVerificationError as exc:
            raise XenlabError(f"xapi at {self.url_for(address)} has a certificate xenlab does not trust: "
                              f"{exc.verify_message or exc} (put the host's certificate in xapi.ca_file)") from None
        except ssl.SSLError as exc:
            return f"TLS with {self.url_for(address)} failed: {exc.reason or exc}"
        except UNREACHABLE as exc:
            return f"xapi at {self.url_for(address)} does not answer: {type(exc).__name__}: {exc}"
        logout(session)
        return None

    def master_session(self, addresses: list[str], timeout: float = 30.0) -> XenAPI.Session:
        """A session on the pool master, found from any of `addresses` (following HOST_IS_SLAVE)."""
        return follow_to_master(lambda address: self.open(address, timeout), addresses)[0]


class NoMaster(XenlabError):
    """No host of the pool answers as its master (it died, and HA has not elected another yet)."""


def follow_to_master(open_session: Callable[[str], XenAPI.Session], addresses: list[str],
                     named: Callable[[str], str] = lambda address: address) -> tuple[XenAPI.Session, str]:
    """Log in to the pool master: the first of `addresses` that answers, following a member's
    HOST_IS_SLAVE to the master it names. A refused login is an error at once; NoMaster when
    none answers."""
    queue, tried, problems = list(addresses), set(), []
    while queue:
        address = queue.pop(0)
        if address in tried:
            continue
        tried.add(address)
        try:
            return open_session(address), address
        except XenAPI.Failure as exc:
            details = exc.details if isinstance(exc.details, list) else [str(exc.details)]
            if details and details[0] == "HOST_IS_SLAVE" and len(details) > 1:
                queue.insert(0, details[1])
                problems.append(f"{named(address)} is a member, master {details[1]}")
                continue
            raise XenlabError(f"login to xapi on {named(address)} failed: "
                              f"{' '.join(str(d) for d in details)}") from None
        except UNREACHABLE as exc:
            problems.append(f"{named(address)}: {type(exc).__name__}")
    raise NoMaster("no pool master answers: " + "; ".join(problems))


def logout(session: XenAPI.Session) -> None:
    try:
        session.xenapi.session.logout()
    except (XenAPI.Failure, *UNREACHABLE):
        pass  # the session ends with the host anyway


def virt_caps_of(capabilities: list[str]) -> list[str]:
    """xapi's host.capabilities (xen-3.0-x86_64, hvm-3.0-x86_64, ...) as `xl info` virt_caps words."""
    caps = []
    if any(c.startswith("xen-") for c in capabilities):
        caps.append("pv")
    if any(c.startswith("hvm-") for c in capabilities):
        caps.append("hvm")
    return caps


def inventory_of(name: str, host: dict[str, Any], metrics: dict[str, Any], nics: list[str],
                 accel: str) -> HostInventory:
    """A HostInventory from xapi's host and host_metrics records (as any XCP-ng reports them)."""
    software, cpu = host.get("software_version", {}), host.get("cpu_info", {})
    cpus = str(cpu.get("cpu_count", ""))
    memory = str(metrics.get("memory_total", ""))
    product = f"{software.get('product_brand', '')} {software.get('product_version', '')}".strip()
    return HostInventory(
        name=name, cpu_model=str(cpu.get("modelname", "")), cpu_flags=str(cpu.get("flags", "")).split(),
        cpus=int(cpus) if cpus.isdigit() else None, memory_mib=int(memory) // MiB if memory.isdigit() else None,
        nics=nics, firmware=product, xen_version=str(software.get("xen", "")), dom0_kernel=str(software.get("linux", "")),
        accel=accel, nested=None, virt_caps=virt_caps_of(list(host.get("capabilities", []))),
        xen_caps=" ".join(host.get("capabilities", [])))


def pool_inventory(x: Any, names: dict[str, str], accel: str) -> list[HostInventory]:
    """Every host of `names` (pool address -> lab name) as the session's xapi reports it."""
    by_address = {}
    for ref in x.host.get_all():
        by_address[x.host.get_address(ref)] = ref
    found = []
    for address, name in names.items():
        ref = by_address.get(address)
        if ref is None:
            found.append(HostInventory(name=name, accel=accel))
            continue
        record = x.host.get_record(ref)
        nics = [x.PIF.get_record(pif) for pif in record.get("PIFs", [])]
        found.append(inventory_of(name, record, x.host_metrics.get_record(x.host.get_metrics(ref)),
                                  [f"{n.get('device', '?')} {n.get('MAC', '')}".strip() for n in nics], accel))
    return found
