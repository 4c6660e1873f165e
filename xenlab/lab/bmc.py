"""Virtual BMCs: an IPMI-over-LAN endpoint per lab host, on 127.0.0.1 only.

A datacenter server is powered through its BMC; so is a lab host whose lab file says
`bmc: ipmi`. Each such host gets its own BMC process (pyghmi's BMC server, the basis of
OpenStack's virtualbmc), started by the lab as

    python -m xenlab.lab.bmc --run-dir RUN_DIR --host h1

so that, like every process of a lab, its command line holds the run directory and
`xenlab down` and the sweep find it. It binds a UDP port of 127.0.0.1 chosen by the
kernel and records it in RUN_DIR/bmc/h1.json. Chassis power maps onto the host's own
power control (`Host.power`): status is whether its QEMU runs, `off` quits QEMU (the
plug is pulled), `on` starts it again, `reset` is the reset button, `cycle` is off then
on. `ipmitool -I lanplus -H 127.0.0.1 -p PORT -U USER -f PASSWORD_FILE chassis power
status` works against it, as does pyghmi's client (`xenlab.lab.ipmi`).

The credentials are generated once per lab (`ensure_credentials`) and kept in
RUN_DIR/bmc/credentials.json (0600, in the 0700 run directory); the server reads them
from there, never from its command line, and never writes them anywhere.

A BMC can also power a plain command as its "machine" (`--command ARGV...`): on starts
it, off kills it. That is how its power mapping is tested without booting Xen.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from ..errors import XenlabError

BMC_USER = "xenlab"
PASSWORD_BYTES = 20  # IPMI 2.0 passwords are at most 20 bytes
# IPMI completion codes the BMC answers with (IPMI 2.0, table 5-2).
CC_OK = 0x00
CC_NOT_IN_PRESENT_STATE = 0xD5  # e.g. reset or cycle of a machine that is off
CC_UNSPECIFIED = 0xFF


# -- credentials ---------------------------------------------------------------------------
def bmc_dir(run_root: Path) -> Path:
    path = Path(run_root) / "bmc"
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path, 0o700)
    return path


def credentials_path(run_root: Path) -> Path:
    return Path(run_root) / "bmc" / "credentials.json"


@dataclass(frozen=True)
class Credentials:
    user: str
    password: str

    def __repr__(self) -> str:  # a secret never shows up in a log or a traceback
        return f"Credentials(user={self.user!r}, password=<hidden>)"

    __str__ = __repr__


def ensure_credentials(run_root: Path) -> Path:
    """The lab's BMC credentials file, generated the first time (0600; its directory 0700)."""
    path = credentials_path(run_root)
    bmc_dir(run_root)
    if path.exists():
        read_credentials(path)  # refuses a file others can read
        return path
    password = secrets.token_urlsafe(PASSWORD_BYTES)[:PASSWORD_BYTES]
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump({"user": BMC_USER, "password": password}, f)
    tmp.replace(path)
    return path


def read_credentials(path: Path) -> Credentials:
    """A BMC credentials file (refused if group or others may read it)."""
    try:
        mode = path.stat().st_mode & 0o777
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise XenlabError(f"no BMC credentials file {path}") from None
    except ValueError:
        raise XenlabError(f"BMC credentials file {path} is damaged (not JSON)") from None
    if mode & 0o077:
        raise XenlabError(f"BMC credentials file {path} is readable by others (mode {mode:o}): chmod 600 it")
    if not isinstance(data, dict) or not isinstance(data.get("user"), str) or not isinstance(data.get("password"), str):
        raise XenlabError(f"BMC credentials file {path} needs a user and a password")
    return Credentials(data["user"], data["password"])


# -- what a BMC powers -----------------------------------------------------------------------
class PowerTarget(Protocol):
    """The machine behind a BMC."""

    def is_on(self) -> bool: ...

    def on(self) -> None: ...

    def off(self) -> None: ...

    def reset(self) -> None: ...


class CommandPower:
    """A command as the machine: on starts it (in its own session, recorded in the run
    directory for the sweep), off kills it, reset restarts it."""

    def __init__(self, argv: list[str], log: Path, run_root: Path):
        self.argv = argv
        self.log = log
        self.run_root = run_root
        self.process: subprocess.Popen | None = None

    def is_on(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def on(self) -> None:
        from .processes import record

        with open(self.log, "ab") as out:
            self.process = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                            start_new_session=True)
        record(self.run_root, self.process.pid)

    def off(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=10)

    def reset(self) -> None:
        self.off()
        self.on()


class LabHostPower:
    """A QEMU lab host: its own power control, through the lab's run directory and state."""

    def __init__(self, run_root: Path, host: str):
        from .lab import Lab  # the same floor; imported here so the lab can import this module
        from .rundir import RunDir

        run = RunDir(Path(run_root))
        state = run.read_state()
        from ..spec import LabSpec

        self.lab = Lab(LabSpec.model_validate(state.spec), state.spec_path, run)
        self.host = self.lab.host(host)

    def is_on(self) -> bool:
        return self.host.process_alive()

    def on(self) -> None:
        self.host.power("on")

    def off(self) -> None:
        self.host.power("off")

    def reset(self) -> None:
        self.host.power("reset")


class SimHostPower:
    """A host of a served XAPI simulator (`xenlab sim serve --bmc-dir`): off is its power cut,
    on boots it back (the simulator's kill_host and heal, through its control endpoint, with
    the control token read from `token_file`)."""

    def __init__(self, control_url: str, host: str, token_file: str | Path):
        from urllib.parse import urlsplit

        if urlsplit(control_url).hostname != "127.0.0.1":
            raise XenlabError(f"the simulator's control endpoint must be on 127.0.0.1, not {control_url}")
        self.control_url = control_url.rstrip("/") + "/"
        self.host = host
        try:
            self.token = Path(token_file).read_text().splitlines()[0].strip()
        except (OSError, IndexError) as exc:
            raise XenlabError(f"{token_file}: cannot read the simulator's control token: {exc}") from None

    def _call(self, action: str, args: dict | None = None):
        import urllib.error
        import urllib.request

        from ..sim.server import TOKEN_HEADER

        request = urllib.request.Request(self.control_url + action, data=json.dumps(args or {}).encode(),
                                         headers={"Content-Type": "application/json", TOKEN_HEADER: self.token},
                                         method="POST")
        try:
            with urllib.request.urlopen(request, timeout=10) as reply:
                answer = json.loads(reply.read())
        except (OSError, ValueError, urllib.error.URLError) as exc:
            raise XenlabError(f"the simulator's control endpoint {self.control_url} did not answer: {exc}") from None
        if not answer.get("ok"):
            raise XenlabError(f"the simulator refused {action} of {self.host}: {answer.get('error')}")
        return answer.get("result")

    def is_on(self) -> bool:
        hosts = {h["name"]: h for h in self._call("status")["hosts"]}
        if self.host not in hosts:
            raise XenlabError(f"the simulator has no host {self.host} (it has {', '.join(hosts)})")
        return bool(hosts[self.host]["alive"])

    def on(self) -> None:
        self._call("heal", {"host": self.host})

    def off(self) -> None:
        self._call("kill_host", {"host": self.host})

    def reset(self) -> None:
        self.off()
        self.on()


# -- the server --------------------------------------------------------------------------------
RMCP_INVALID_AUTH_ALGORITHM = 0x11  # RMCP+ status code (IPMI 2.0, table 13-15)


def _bmc_class():
    from pyghmi.ipmi.bmc import Bmc
    from pyghmi.ipmi.private import serversession

    class CipherSuite3Session(serversession.ServerSession):
        """pyghmi's server session speaks cipher suite 3 only (HMAC-SHA1, HMAC-SHA1-96,
        AES-CBC-128) but answers any proposal as if it were accepted. A client proposing
        another suite (pyghmi's own client tries SHA-256 first) then fails at RAKP 2; say
        "invalid authentication algorithm" instead, as a BMC must, so it falls back to 3."""

        def create_open_session_response(self, request):
            proposed = (request[12], request[20], request[28]) if len(request) >= 32 else (1, 1, 1)
            if proposed != (1, 1, 1):
                self.clientsessionid = request[4:8]
                return bytearray([request[0], RMCP_INVALID_AUTH_ALGORITHM, 0, 0]) + self.clientsessionid
            return super().create_open_session_response(request)

    serversession.ServerSession = CipherSuite3Session  # what IpmiServer instantiates (in this BMC process)

    class VirtualBmc(Bmc):
        """pyghmi's BMC server with chassis power mapped onto a PowerTarget."""

        def __init__(self, target: PowerTarget, credentials: Credentials, port: int, name: str):
            super().__init__({credentials.user: credentials.password}, port=port, address="127.0.0.1")
            # pyghmi routes a session's packets by the BMC's port: the one bound, not 0
            self.port = self.serversocket.getsockname()[1]
            self.target = target
            self.name = name

        def _do(self, what: str, action) -> int:
            try:
                action()
            except Exception as exc:  # noqa: BLE001 - a failed action is an IPMI error code, and logged
                print(f"bmc {self.name}: power {what} failed: {exc}", file=sys.stderr, flush=True)
                return CC_UNSPECIFIED
            print(f"bmc {self.name}: power {what}", file=sys.stderr, flush=True)
            return CC_OK

        def get_power_state(self) -> str:
            return "on" if self.target.is_on() else "off"

        def power_on(self) -> int:
            if self.target.is_on():
                return CC_OK
            return self._do("on", self.target.on)

        def power_off(self) -> int:
            if not self.target.is_on():
                return CC_OK
            return self._do("off", self.target.off)

        def power_reset(self) -> int:
            if not self.target.is_on():
                return CC_NOT_IN_PRESENT_STATE
            return self._do("reset", self.target.reset)

        def power_cycle(self) -> int:
            if not self.target.is_on():
                return CC_NOT_IN_PRESENT_STATE

            def cycle() -> None:
                self.target.off()
                self.target.on()
            return self._do("cycle", cycle)

    return VirtualBmc


def port_file(run_root: Path, host: str) -> Path:
    return Path(run_root) / "bmc" / f"{host}.json"


def serve(run_root: Path, host: str, target: PowerTarget, port: int = 0) -> None:
    """Serve IPMI for `host` on 127.0.0.1:`port` (0: the kernel chooses) until killed."""
    from pyghmi.ipmi.private import session as ipmisession

    credentials = read_credentials(credentials_path(run_root))
    bmc = _bmc_class()(target, credentials, port, host)
    bound = bmc.serversocket.getsockname()
    if bound[0] != "127.0.0.1":
        raise XenlabError(f"bmc {host}: bound to {bound[0]}, not 127.0.0.1")
    record = port_file(run_root, host)
    tmp = record.with_suffix(".tmp")
    tmp.write_text(json.dumps({"host": host, "port": bound[1], "pid": os.getpid(),
                               "credentials": str(credentials_path(run_root))}))
    tmp.replace(record)
    print(f"bmc {host}: IPMI on 127.0.0.1:{bound[1]}", file=sys.stderr, flush=True)
    while True:
        ipmisession.Session.wait_for_rsp(timeout=1)
        _reap_children()


def _reap_children() -> None:
    """Collect machines that exited by themselves (or were stopped by another xenlab process)."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


# -- starting and reading BMCs (the lab's side) -------------------------------------------------
@dataclass(frozen=True)
class BmcEndpoint:
    host: str
    port: int
    pid: int
    credentials: str  # the credentials file's path (never its content)

    def status(self) -> dict:
        return {"interface": "ipmi", "address": "127.0.0.1", "port": self.port, "pid": self.pid,
                "credentials_file": self.credentials}


def read_endpoint(run_root: Path, host: str) -> BmcEndpoint | None:
    try:
        data = json.loads(port_file(run_root, host).read_text())
    except (FileNotFoundError, ValueError):
        return None
    return BmcEndpoint(data["host"], int(data["port"]), int(data["pid"]), data["credentials"])


def start_lab_bmcs(lab, tied: bool) -> dict[str, tuple[int, subprocess.Popen]]:
    """A BMC for every host of a QEMU lab whose lab file asks for one (`bmc: ipmi`)."""
    started = {}
    for host in lab.hosts:
        if lab.spec.bmc_of(host.name) == "ipmi":
            endpoint, handle = start_bmc(lab.run.root, host.name, tied)
            started[host.name] = (endpoint.pid, handle)
    return started


def bmc_status(run_root: Path, host: str) -> dict:
    """What `xenlab status --json` shows of a host's BMC: where it listens and the credentials
    file's path (never the credentials)."""
    from .processes import alive

    endpoint = read_endpoint(run_root, host)
    if endpoint is None or not alive(endpoint.pid, str(run_root) + "/"):
        return {"interface": "ipmi", "state": "not running"}
    return {**endpoint.status(), "state": "listening"}


_CLIENTS: dict[tuple[str, str, int], object] = {}  # one IPMI session per BMC in this process (see ipmi.IpmiPower)


def bmc_power(run_root: Path, host: str):
    """An IPMI client of `host`'s virtual BMC (`xenlab.lab.ipmi.IpmiPower`), logged in with the lab's credentials."""
    from .ipmi import IpmiPower, IpmiTarget
    from .processes import alive

    endpoint = read_endpoint(run_root, host)
    if endpoint is None or not alive(endpoint.pid, str(run_root) + "/"):
        raise XenlabError(f"{host} has no virtual BMC running (its lab file asks for `bmc: ipmi`; "
                          f"see {Path(run_root) / 'logs' / f'bmc-{host}.log'})")
    key = (str(run_root), host, endpoint.port)
    if key not in _CLIENTS:
        credentials = read_credentials(credentials_path(run_root))
        _CLIENTS[key] = IpmiPower(IpmiTarget(host, "127.0.0.1", endpoint.port, credentials.user,
                                             lambda: credentials.password))
    return _CLIENTS[key]


def sim_token_path(run_root: Path) -> Path:
    """Where a served simulator's BMCs find its control token (0600, in their 0700 run directory)."""
    return Path(run_root) / "sim-control-token"


def bmc_argv(run_root: Path, host: str, command: list[str] | None = None, sim_control: str | None = None) -> list[str]:
    # the run directory with its trailing "/": the marker `down` and the sweep look for
    argv = [sys.executable, "-m", "xenlab.lab.bmc", "--run-dir", f"{run_root}/", "--host", host]
    if sim_control:
        argv += ["--sim-control", sim_control]  # its token: sim_token_path(run_root)
    return argv + (["--command", *command] if command else [])


def start_bmc(run_root: Path, host: str, tied: bool, command: list[str] | None = None,
              timeout: float = 20, sim_control: str | None = None) -> tuple[BmcEndpoint, subprocess.Popen]:
    """Start the BMC process of `host` (credentials generated if needed); wait until it listens."""
    from .processes import spawn

    run_root = Path(run_root)
    ensure_credentials(run_root)
    port_file(run_root, host).unlink(missing_ok=True)
    logs = run_root / "logs"
    logs.mkdir(mode=0o700, exist_ok=True)
    log = logs / f"bmc-{host}.log"
    env_path = os.environ.get("PYTHONPATH")
    handle = spawn(bmc_argv(run_root, host, command, sim_control), log, tied, record_in=run_root)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = read_endpoint(run_root, host)
        if found is not None and found.pid == handle.pid:
            return found, handle
        if handle.poll() is not None:
            break
        time.sleep(0.05)  # waiting for a new process to bind its port
    if handle.poll() is None:
        handle.kill()
    handle.wait(timeout=5)
    tail = log.read_text(errors="replace")[-1500:] if log.exists() else ""
    raise XenlabError(f"the BMC of {host} did not start (PYTHONPATH={env_path or ''}); {log}:\n{tail}")


class SimBmcs:
    """The virtual BMCs of a served XAPI simulator's hosts (`xenlab sim serve --bmc-dir DIR`).

    DIR is their run directory (0700): credentials.json as for a lab, and DIR/bmc-password
    (0600, the password on its first line) for a static lab file's `password_file`. Each
    BMC is its own process, tied to the simulator's, with DIR in its command line."""

    def __init__(self, run_root: Path):
        self.run_root = Path(run_root).resolve()
        self.handles: list[subprocess.Popen] = []

    def start(self, sim) -> list[str]:
        self.run_root.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self.run_root, 0o700)
        credentials = read_credentials(ensure_credentials(self.run_root))
        password_file = self.run_root / "bmc-password"
        fd = os.open(password_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(credentials.password + "\n")
        os.chmod(password_file, 0o600)
        token_file = sim_token_path(self.run_root)  # the BMCs' key to the simulator's control API
        fd = os.open(token_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(sim.control_token + "\n")
        os.chmod(token_file, 0o600)
        lines = [f"  BMCs (IPMI over LAN on 127.0.0.1, user {credentials.user!r}, password in {password_file}):"]
        for host in sim.deployment.hosts:
            endpoint, handle = start_bmc(self.run_root, host.name, tied=True, sim_control=sim.control_url)
            self.handles.append(handle)
            lines.append(f"  {host.name}: ipmitool -I lanplus -H 127.0.0.1 -p {endpoint.port} -U {credentials.user} "
                         f"-f {password_file} chassis power status")
        return lines

    def stop(self) -> None:
        for handle in self.handles:
            if handle.poll() is None:
                handle.terminate()
        for handle in self.handles:
            try:
                handle.wait(timeout=10)
            except subprocess.TimeoutExpired:
                handle.kill()
                handle.wait(timeout=5)
        sim_token_path(self.run_root).unlink(missing_ok=True)  # that simulator's token dies with it


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m xenlab.lab.bmc", description=__doc__.split("\n\n")[0])
    parser.add_argument("--run-dir", required=True, help="the lab's run directory (holds bmc/credentials.json)")
    parser.add_argument("--host", required=True, help="the lab host this BMC powers")
    parser.add_argument("--port", type=int, default=0, help="UDP port on 127.0.0.1 (0: chosen by the kernel)")
    parser.add_argument("--sim-control", help="power a host of a served XAPI simulator (its control URL)")
    parser.add_argument("--command", nargs=argparse.REMAINDER,
                        help="power this command as the machine instead of a lab host")
    args = parser.parse_args(argv)
    run_root = Path(args.run_dir)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # `down`: exit (a command machine goes with it)
    try:
        if args.command:
            machine = CommandPower(args.command, run_root / "logs" / f"machine-{args.host}.log", run_root)
            machine.on()
            try:
                serve(run_root, args.host, machine, args.port)
            finally:
                machine.off()  # a command machine does not outlive its BMC
        elif args.sim_control:
            serve(run_root, args.host, SimHostPower(args.sim_control, args.host, sim_token_path(run_root)), args.port)
        else:
            serve(run_root, args.host, LabHostPower(run_root, args.host), args.port)
    except XenlabError as exc:
        print(f"bmc {args.host}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
