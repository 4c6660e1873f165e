"""HTTP front end: one XML-RPC/JSON-RPC listener per simulated host.

Routing decision: every host gets its own 127.0.0.1 port, so a killed host
really refuses connections (its listener closes and open keep-alive
connections are cut), exactly what a client of a dead xapi sees.  A separate
control listener serves the fault-injection API under ``/_sim/`` and also
forwards ``/host/<name>[/jsonrpc]`` to a host, for single-port setups.

Paths on a host port: ``/`` (POST, XML-RPC), ``/jsonrpc`` (POST, JSON-RPC 1.0
or 2.0), ``/_sim/<action>`` (control, JSON).

The control API kills hosts and moves the clock, so it is not open to whoever can
reach 127.0.0.1: every ``/_sim/`` request, on any listener, must carry the
simulator's control token in the ``X-Xenlab-Sim-Token`` header (401 otherwise).
``SimServer.control_token`` holds it; ``xenlab sim serve`` writes it to a 0600 file
next to the password file and removes both files it made when it stops.
"""

from __future__ import annotations

import hmac
import json
import os
import secrets
import signal
import socket
import sys
import tempfile
import threading
import xmlrpc.client
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self
from xml.parsers.expat import ExpatError

from .agents import DEFAULT_AGENT_S
from .deployment import Deployment
from .dispatch import Outcome, dispatch
from .faults import Control
from .hosts import SimHost
from .wire import JSON, XML, xml_response

BIND = "127.0.0.1"
TOKEN_HEADER = "X-Xenlab-Sim-Token"  # carries the control token on every /_sim/ request


class _Drop(Exception):
    """Close the connection without answering (the host is down)."""


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, addr, handler, sim: SimServer, host: SimHost | None):
        self.sim = sim
        self.host = host
        self.conns: set[socket.socket] = set()
        self.conns_lock = threading.Lock()
        super().__init__(addr, handler)

    def handle_error(self, request, client_address) -> None:
        """A client that hangs up mid-request (a cut host, a killed test) is
        ordinary for a simulated pool: say nothing.  Anything else is a bug in
        the simulator and keeps its traceback."""
        if isinstance(sys.exc_info()[1], OSError):
            return
        super().handle_error(request, client_address)

    def cut_connections(self) -> None:
        with self.conns_lock:
            conns = list(self.conns)
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, fmt: str, *args: Any) -> None:  # requests carry passwords: never log
        return

    def setup(self) -> None:
        super().setup()
        with self.server.conns_lock:
            self.server.conns.add(self.connection)
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def finish(self) -> None:
        with self.server.conns_lock:
            self.server.conns.discard(self.connection)
        try:
            super().finish()
        except OSError:
            pass

    # ------------------------------------------------------------------ routing
    def _route(self) -> tuple[SimHost | None, str]:
        path = self.path.split("?", 1)[0]
        host = self.server.host
        if host is None and path.startswith("/host/"):
            rest = path[len("/host/") :]
            name, _, sub = rest.partition("/")
            try:
                host = self.server.sim.deployment.host(name)
            except KeyError:
                return None, "/__unknown_host__"
            path = "/" + sub
        return host, path

    def do_GET(self) -> None:
        _host, path = self._route()
        if path.startswith("/_sim/"):
            return self._control(path, b"")
        self._reply(200, b"xenlab XAPI simulator\n", "text/plain")

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        host, path = self._route()
        try:
            if path.startswith("/_sim/"):
                return self._control(path, body)
            if host is None:
                return self._reply(404, b"no such host\n", "text/plain")
            if not host.serving:
                raise _Drop
            if api_handler(path) == "jsonrpc":
                self._jsonrpc(host, body)
            else:
                self._xmlrpc(host, body)
        except _Drop:
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    # ------------------------------------------------------------------ protocols
    def _call(self, host: SimHost, method: str, params: list, proto: str) -> Outcome:
        out = dispatch(self.server.sim.deployment, host, method, params, proto)
        if not host.serving:
            raise _Drop  # died while we were working on it
        return out

    def _xmlrpc(self, host: SimHost, body: bytes) -> None:
        try:
            params, method = xmlrpc.client.loads(body, use_builtin_types=False)
        except (ExpatError, ValueError, TypeError, IndexError, xmlrpc.client.ResponseError):
            return self._reply(400, b"malformed XML-RPC request\n", "text/plain")
        out = self._call(host, method or "", list(params), XML)
        if method == "system.listMethods" and out.ok:
            # xapi answers this one call with the bare array, not a Status/Value struct
            return self._reply(200, xml_response(out.value), "text/xml")
        if out.ok:
            resp = {"Status": "Success", "Value": out.value}
        else:
            resp = {"Status": "Failure", "ErrorDescription": out.error}
        self._reply(200, xml_response(resp), "text/xml")

    def _jsonrpc(self, host: SimHost, body: bytes) -> None:
        try:
            req = json.loads(body)
            method = req["method"]
            params = req.get("params", [])
            if not isinstance(params, list):
                raise TypeError("params must be a list")
        except (ValueError, KeyError, TypeError):
            return self._reply(400, b"malformed JSON-RPC request\n", "application/json")
        v2 = req.get("jsonrpc") == "2.0"
        rid = req.get("id")
        out = self._call(host, method, params, JSON)
        if v2:
            if out.ok:
                resp = {"jsonrpc": "2.0", "result": out.value, "id": rid}
            else:
                err = out.error or [""]
                resp = {"jsonrpc": "2.0", "error": {"code": 1, "message": err[0], "data": err[1:]}, "id": rid}
        else:
            resp = {"result": out.value if out.ok else None, "error": None if out.ok else out.error, "id": rid}
        self._reply(200, json.dumps(resp).encode(), "application/json")

    def _control(self, path: str, body: bytes) -> None:
        given = self.headers.get(TOKEN_HEADER, "")
        if not hmac.compare_digest(given.encode(), self.server.sim.control_token.encode()):
            error = f"the control API needs the simulator's control token in the {TOKEN_HEADER} header"
            return self._reply(401, json.dumps({"ok": False, "error": error}).encode(), "application/json")
        action = path[len("/_sim/") :].strip("/")
        try:
            args = json.loads(body or b"{}")
            if not isinstance(args, dict):
                raise TypeError("the control request body must be a JSON object")
            result = self.server.sim.control.call(action, args)
            self._reply(200, json.dumps({"ok": True, "result": result}).encode(), "application/json")
        except (KeyError, ValueError, TypeError) as e:
            self._reply(400, json.dumps({"ok": False, "error": str(e)}).encode(), "application/json")

    def _reply(self, code: int, data: bytes, ctype: str) -> None:
        try:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client went away while we worked (e.g. a waiting event.from)


# xapi's POST handlers for the API, matched by longest prefix of the path as its HTTP
# server does (Radix_tree.longest_prefix): "/xmlrpc" and "/anything" reach "/".
API_PATHS = {"/": "xmlrpc", "/RPC2": "xmlrpc", "/json": "xmlrpc", "/jsonrpc": "jsonrpc"}


def api_handler(path: str) -> str:
    """Which API handler xapi would run for a POST to ``path``."""
    best = max((p for p in API_PATHS if path.startswith(p)), key=len, default="/")
    return API_PATHS[best]


def _shutdown(srv: _Server) -> None:
    """Stop accepting, close the listening socket, cut open connections."""
    srv.shutdown()
    srv.server_close()
    srv.cut_connections()


class SimServer:
    """A running simulator: N host endpoints + a control endpoint on 127.0.0.1.

    ``port=0`` picks free ports; otherwise control is on ``port`` and host i on
    ``port + 1 + i``.  Use as a context manager or call ``start``/``stop``.
    Extra options go to ``Deployment``: ``host_memory`` (bytes, default 256 GiB),
    ``host_cpus``, ``async_instant`` (Async tasks finish without advancing the
    virtual clock) and ``time_scale`` (real-time mode duration multiplier).
    """

    def __init__(
        self,
        hosts: int = 3,
        password: str | None = None,
        port: int = 0,
        realtime: bool = False,
        *,
        user: str = "root",
        loopback_addresses: bool = False,
        control_token: str | None = None,
        **options: Any,
    ) -> None:
        if password is None:
            raise TypeError("SimServer needs the password clients must log in with")
        # what every /_sim/ request must carry in its X-Xenlab-Sim-Token header (a fresh one by default)
        self.control_token = control_token or secrets.token_urlsafe(24)
        if loopback_addresses and hosts > 250:
            raise ValueError("loopback addresses: at most 250 hosts")
        # loopback_addresses: host i's address is 127.0.0.<i+1> and it listens there, every
        # host on the same port, so a client that follows HOST_IS_SLAVE to the master's
        # address (Xen Orchestra does) reaches it; otherwise addresses are 10.0.0.N labels.
        self.loopback_addresses = loopback_addresses
        if loopback_addresses:
            options["addresses"] = [f"127.0.0.{i + 1}" for i in range(hosts)]
        self.deployment = Deployment(hosts=hosts, password=password, user=user, realtime=realtime, **options)
        self.base_port = port
        self.control = Control(self.deployment)
        self._servers: dict[int, _Server] = {}
        self._ports: dict[int, int] = {}
        self._control_server: _Server | None = None
        self._lock = threading.Lock()
        self._started = False
        for h in self.deployment.hosts:
            h.on_state_change.append(self._host_changed)

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> SimServer:
        if self._started:
            return self
        cport = self.base_port if self.base_port else 0
        self._control_server = self._listen(cport, None)
        shared = self.base_port + 1 if self.base_port else 0
        for h in self.deployment.hosts:
            if self.loopback_addresses:
                self._open_host(h, shared)
                shared = self._ports[h.index]  # every host on the first one's port
            else:
                self._open_host(h, self.base_port + 1 + h.index if self.base_port else 0)
        self._started = True
        return self

    def _bind_address(self, host: SimHost | None) -> str:
        return host.address if host is not None and self.loopback_addresses else BIND

    def _listen(self, port: int, host: SimHost | None) -> _Server:
        srv = _Server((self._bind_address(host), port), _Handler, self, host)
        t = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
        t.name = f"sim-http-{host.name if host else 'control'}"
        t.start()
        return srv

    def _open_host(self, h: SimHost, port: int) -> None:
        srv = self._listen(port, h)
        self._servers[h.index] = srv
        self._ports[h.index] = srv.server_address[1]

    def _close_host(self, h: SimHost) -> None:
        srv = self._servers.pop(h.index, None)
        if srv is not None:
            _shutdown(srv)

    def _host_changed(self, h: SimHost) -> None:
        if not self._started:
            return
        with self._lock:
            if h.serving and h.index not in self._servers:
                self._open_host(h, self._ports[h.index])
            elif not h.serving and h.index in self._servers:
                self._close_host(h)

    def stop(self) -> None:
        self.deployment.stop()
        with self._lock:
            servers = list(self._servers.values())
            self._servers.clear()
            if self._control_server:
                servers.append(self._control_server)
                self._control_server = None
            # shut listeners down in parallel: each waits for its poll loop
            threads = [threading.Thread(target=_shutdown, args=(srv,), daemon=True) for srv in servers]
            for t in threads:
                t.start()
            for t in threads:
                t.join(5)
        self._started = False

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ addressing
    def url_for(self, host: int | str) -> str:
        """XML-RPC URL of a host given its index, name ("h1"), address or uuid."""
        h = self.deployment.host(host)
        return f"http://{self._bind_address(h)}:{self._ports[h.index]}/"

    def jsonrpc_url_for(self, host: int | str) -> str:
        return self.url_for(host) + "jsonrpc"

    @property
    def control_url(self) -> str:
        assert self._control_server is not None
        return f"http://{BIND}:{self._control_server.server_address[1]}/_sim/"

    @property
    def urls(self) -> list[str]:
        return [self.url_for(h.index) for h in self.deployment.hosts]


def read_password_file(path: str) -> str:
    """The first line of a password file; a clear error (naming the file) if it is unusable."""
    try:
        with open(path) as f:
            password = f.readline().strip()
    except OSError as e:
        raise ValueError(f"{path}: cannot read the password file: {e.strerror}") from None
    if not password:
        raise ValueError(f"{path}: the password file is empty (line 1 should hold the password)")
    return password


def generated_password_file() -> tuple[str, str]:
    """A fresh password in a new 0600 file: (password, path)."""
    password = secrets.token_urlsafe(16)
    return password, _secret_file(password, "xenlab-sim-", ".pw", None)


def control_token_file(token: str, password_file: str) -> str:
    """The control token in a new 0600 file next to the password file (or in the temp dir
    when that directory is not writable): its path."""
    try:
        return _secret_file(token, "xenlab-sim-control-", ".token", os.path.dirname(os.path.abspath(password_file)))
    except OSError:
        return _secret_file(token, "xenlab-sim-control-", ".token", None)


def _secret_file(secret: str, prefix: str, suffix: str, directory: str | None) -> str:
    fd, path = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=directory)  # mkstemp: 0600, a new name
    with os.fdopen(fd, "w") as f:
        f.write(secret + "\n")
    os.chmod(path, 0o600)
    return path


def form_pool(sim: SimServer, password: str) -> None:
    """Join every other host into h1's pool (``--pool``), through the XAPI surface itself."""
    dep = sim.deployment
    scale, dep.time_scale = dep.time_scale, 0.0  # formation is instant, whatever the clock
    try:
        master = dep.host(0)
        for h in dep.hosts[1:]:
            login = dispatch(dep, h, "session.login_with_password", [dep.user, password, "2.21", "xenlab"], JSON)
            if not login.ok:
                raise RuntimeError(f"{h.name}: login failed: {login.error}")
            out = dispatch(dep, h, "pool.join", [login.value, master.address, dep.user, password], JSON)
            if not out.ok:
                raise RuntimeError(f"{h.name}: pool.join failed: {out.error}")
    finally:
        dep.time_scale = scale


def describe(sim: SimServer, password_file: str, pool: bool, token_file: str | None = None) -> list[str]:
    """What ``xenlab sim serve`` prints: where it listens, how to log in, each host."""
    dep = sim.deployment
    n = len(dep.hosts)
    clock = "real-time" if dep.clock.realtime else "virtual (POST /_sim/advance moves it)"
    shape = f"one pool of {n} (master h1)" if pool else f"{n} standalone host{'s' if n > 1 else ''}"
    lines = [
        f"xenlab XAPI simulator: {shape}, {clock} clock; event.from timeouts in wall-clock time",
        f"  login: user {dep.user!r}, password read from {password_file}",
        "  (XML-RPC at / and /xmlrpc, JSON-RPC at /jsonrpc; a pool member answers HOST_IS_SLAVE)",
    ]
    for h in dep.hosts:
        role = ("master" if dep.is_master(h) else "member") if pool else "standalone"
        lines.append(f"  {h.name} ({h.address}, {role}): {sim.url_for(h.index)}  jsonrpc: {sim.jsonrpc_url_for(h.index)}")
    if token_file:
        lines.append(f"  control token: header {TOKEN_HEADER}, its value read from {token_file}")
    lines.append(f"  control: {sim.control_url}  (POST kill_host/isolate_host/heal/advance/status)")
    return lines


def serve_forever(
    port: int,
    hosts: int,
    realtime: bool,
    password_file: str | None,
    *,
    pool: bool = False,
    loopback_addresses: bool = False,
    ready: Callable[[list[str]], None] | None = None,
    extras: Callable[[SimServer], list[str]] | None = None,
    time_scale: float = 1.0,
    agent_s: float = DEFAULT_AGENT_S,
) -> None:
    """Run a simulator until interrupted or terminated (for ``xenlab sim serve``); prints how to
    reach it, where the control token is, and removes the files it made (token, generated password).

    Real clients wait on a served simulator in real time, so event.from/event.next
    timeouts are always wall-clock; ``realtime`` says whether the simulated clock (HA
    timeouts, task durations) runs too, or only moves through ``/_sim/advance``.
    """
    made: list[str] = []  # the files this serve wrote, removed when it stops
    if password_file:
        password = read_password_file(password_file)
    else:
        password, password_file = generated_password_file()
        made.append(password_file)
    try:
        previous = signal.signal(signal.SIGTERM, _stop_on_sigterm)  # `kill` stops it as Ctrl-C does
    except ValueError:  # not the main thread: whoever runs us handles signals
        previous = None
    sim = SimServer(hosts=hosts, password=password, port=port, realtime=realtime, event_timeouts="wall",
                    loopback_addresses=loopback_addresses, time_scale=time_scale, agent_s=agent_s)
    try:
        made.append(control_token_file(sim.control_token, password_file))
        sim.start()
        if pool:
            form_pool(sim, password)
        lines = describe(sim, password_file, pool, made[-1]) + (extras(sim) if extras is not None else [])
        for line in lines:
            print(line, flush=True)
        if ready is not None:
            ready(lines)
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        sim.stop()
        for path in made:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        print("simulator stopped", file=sys.stderr)


def _stop_on_sigterm(signum: int, frame: object) -> None:
    raise KeyboardInterrupt
