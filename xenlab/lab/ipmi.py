"""Power through a BMC, as a client: IPMI over LAN (RMCP+) with pyghmi.

Used for the hosts of a static lab (real servers, or a QEMU lab's virtual BMCs
pretending to be them). The password is read when needed from the file or the
environment variable the lab file names; it is never stored in xenlab's state, logged,
or put in an error message.
"""

from __future__ import annotations

import hashlib
import threading
import time
from dataclasses import dataclass, field

from ..errors import XenlabError

POWER_REQUESTS = ("on", "off", "reset", "cycle")
# One pyghmi session per BMC and login (address, port, user, password) in this process, whoever asks: pyghmi
# hands a second login to the same BMC the first one's state, and that login can wait for
# ever (measured: a static lab's host and the QEMU lab's own fault path asking one BMC).
_SESSIONS: dict[tuple[str, int, str, str], object] = {}
_SESSIONS_LOCK = threading.Lock()


@dataclass(frozen=True)
class IpmiTarget:
    """One BMC: where it listens and who logs in (the password is fetched by `password()`)."""

    host: str  # the lab host it powers (for messages)
    address: str
    port: int
    user: str
    password_source: object = field(repr=False)  # callable returning the password

    def password(self) -> str:
        return self.password_source()  # type: ignore[operator]


class IpmiPower:
    """Chassis power of one host through its BMC."""

    def __init__(self, target: IpmiTarget, timeout: float = 30):
        self.target = target
        self.timeout = timeout

    @property
    def _key(self) -> tuple[str, int, str, str]:
        """The BMC and the login, as pyghmi tells sessions apart (the password only as a digest)."""
        t = self.target
        return (t.address, t.port, t.user, hashlib.sha256(t.password().encode()).hexdigest())

    def _command(self):
        from pyghmi.exceptions import IpmiException
        from pyghmi.ipmi.command import Command

        with _SESSIONS_LOCK:
            session = _SESSIONS.get(self._key)
            if session is None:
                t = self.target
                try:
                    session = Command(bmc=t.address, userid=t.user, password=t.password(), port=t.port,
                                      keepalive=True)
                except IpmiException as exc:
                    raise XenlabError(f"{t.host}: IPMI login to its BMC {t.address}:{t.port} as {t.user} failed: "
                                      f"{exc}") from None
                _SESSIONS[self._key] = session
            return session

    def _do(self, what: str, fn):
        """`fn(command)` on this host's BMC session. One session per BMC and user is kept:
        pyghmi hands a second login to the same BMC in one process the first one's state, so
        a session is only replaced when it broke (the BMC restarted or expired it), once. A
        refusal by the BMC (a completion code) leaves the session as it is."""
        from pyghmi.exceptions import IpmiException

        t = self.target
        for attempt in (1, 2):
            command = self._command()
            try:
                return fn(command)
            except IpmiException as exc:
                broken = bool(getattr(command.ipmi_session, "broken", False))
                if broken:
                    with _SESSIONS_LOCK:
                        if _SESSIONS.get(self._key) is command:
                            del _SESSIONS[self._key]
                if attempt == 2 or not broken:
                    raise XenlabError(f"{t.host}: IPMI {what} on its BMC {t.address}:{t.port} failed: {exc}") from None
        raise AssertionError("unreachable")

    def state(self) -> str:
        """on or off, as the BMC reports the chassis."""
        return self._do("power status", lambda c: c.get_power()["powerstate"])

    def is_on(self) -> bool:
        return self.state() == "on"

    def request(self, action: str, wait: float = 0) -> None:
        """on, off (hard: the plug), reset (the button), cycle (off, then on); `wait` s for on/off to show."""
        if action not in POWER_REQUESTS:
            raise XenlabError(f"unknown power request {action!r} (one of {', '.join(POWER_REQUESTS)})")

        def send(c) -> None:
            if action == "cycle":
                response = c.raw_command(netfn=0, command=2, data=[2])
                if "error" in response:
                    from pyghmi.exceptions import IpmiException

                    raise IpmiException(response["error"])
            else:
                c.set_power(action, wait=False)
        self._do(f"power {action}", send)
        if wait and action in ("on", "off"):
            deadline = time.monotonic() + wait
            while self.state() != action:
                if time.monotonic() > deadline:
                    raise XenlabError(f"{self.target.host}: its BMC did not report power {action} within {wait:.0f}s")
                time.sleep(0.5)  # polling the BMC's chassis status
