"""SSH to lab machines with paramiko: the lab's own key, pinned host keys, timeouts.

One connection per machine is kept and reused; it is dropped and reopened when the
machine was reset, powered off or restored from a checkpoint.
"""

from __future__ import annotations

import contextlib
import logging
import select
import shlex
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import paramiko

from ..errors import CommandFailed, XenlabError
from .contract import LabHost
from .verbs import HostVerbs

# paramiko logs every refused connection attempt with a traceback while a machine boots;
# our waits report failures themselves, with context.
logging.getLogger("paramiko").addHandler(logging.NullHandler())
logging.getLogger("paramiko").propagate = False


@dataclass(frozen=True)
class CommandResult:
    host: str
    command: str
    status: int
    stdout: str
    stderr: str
    seconds: float

    @property
    def ok(self) -> bool:
        return self.status == 0


class SSHAccess:
    """Reusable, thread-safe SSH access to one machine (a lab machine forwarded on
    127.0.0.1:port, or a static host at its own address), its host key pinned."""

    def __init__(self, host: str, port: int, client_key_path: str, host_public_line: str,
                 address: str = "127.0.0.1", user: str = "root"):
        self.host = host
        self.port = port
        self.address = address
        self.user = user
        self._pkey = paramiko.PKey.from_path(client_key_path)
        key_type, key_b64 = host_public_line.split()[:2]
        self._host_key = paramiko.PKey.from_type_string(key_type, __import__("base64").b64decode(key_b64))
        self._client: paramiko.SSHClient | None = None
        self._lock = threading.Lock()

    def _connect(self, timeout: float) -> paramiko.SSHClient:
        client = paramiko.SSHClient()
        known_as = self.address if self.port == 22 else f"[{self.address}]:{self.port}"
        client.get_host_keys().add(known_as, self._host_key.get_name(), self._host_key)
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
        client.connect(
            self.address, port=self.port, username=self.user, pkey=self._pkey,
            timeout=timeout, banner_timeout=timeout, auth_timeout=timeout,
            allow_agent=False, look_for_keys=False,
        )
        transport = client.get_transport()
        assert transport is not None
        transport.set_keepalive(15)
        return client

    def connect_new(self, timeout: float = 30) -> paramiko.SSHClient:
        """A new connection of its own (a caller that closes it, such as testinfra), same pins."""
        return self._connect(timeout)

    def client(self, timeout: float = 10) -> paramiko.SSHClient:
        with self._lock:
            transport = self._client.get_transport() if self._client else None
            if transport is None or not transport.is_active():
                self.close_locked()
                self._client = self._connect(timeout)
            return self._client

    def close(self) -> None:
        with self._lock:
            self.close_locked()

    def close_locked(self) -> None:
        if self._client is not None:
            with contextlib.suppress(Exception):  # closing a dead connection may fail; it is gone
                self._client.close()
            self._client = None

    def run(self, command: str, timeout: float = 60, check: bool = False, input: bytes | None = None) -> CommandResult:
        """Run `command` with `input` (or nothing) on its stdin; at `timeout` the channel is
        closed and CommandFailed (status None) raised."""
        started = time.monotonic()
        try:
            transport = self.client(timeout=min(timeout, 15)).get_transport()
            assert transport is not None
            channel = transport.open_session(timeout=min(timeout, 15))
        except (paramiko.SSHException, OSError, EOFError) as exc:
            self.close()
            raise XenlabError(f"{self.host}: SSH to {self.address}:{self.port} failed: {exc}") from None
        out, err = bytearray(), bytearray()
        deadline = started + timeout
        try:
            channel.exec_command(command)
            if input:
                channel.sendall(input)
            channel.shutdown_write()  # EOF on stdin: a command reading it must not hang
            while True:
                while channel.recv_ready():
                    out += channel.recv(65536)
                while channel.recv_stderr_ready():
                    err += channel.recv_stderr(65536)
                if channel.exit_status_ready() and not channel.recv_ready() and not channel.recv_stderr_ready():
                    break
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise CommandFailed(self.host, command, None, out.decode(errors="replace"), err.decode(errors="replace"))
                select.select([channel], [], [], min(remaining, 1.0))
            status = channel.recv_exit_status()
        except (OSError, paramiko.SSHException, EOFError) as exc:
            self.close()
            raise XenlabError(f"{self.host}: SSH session broke during `{command}`: {exc}") from None
        finally:
            channel.close()
        result = CommandResult(self.host, command, status, out.decode(errors="replace"),
                               err.decode(errors="replace"), time.monotonic() - started)
        if check and status != 0:
            raise CommandFailed(self.host, command, status, result.stdout, result.stderr)
        return result


class RemoteShell(HostVerbs, LabHost):
    """The verbs of a machine reached over SSH (its `ssh`), for QEMU lab hosts and real
    hosts alike: run, put, write_file, forget_connections, and the test verbs of
    `HostVerbs` (succeed, fail, wait_until_succeeds, wait_for_unit, copy_to_host, ...)."""

    capabilities = frozenset({"shell"})

    name: str
    _ssh: SSHAccess | None

    @property
    def ssh(self) -> SSHAccess:
        raise NotImplementedError

    def run(self, command: str, timeout: float = 60, input: bytes | None = None) -> CommandResult:
        return self.ssh.run(command, timeout=timeout, input=input)

    def put(self, local: Path, remote: str) -> None:
        """Copy a local file to the machine (SFTP over the same SSH connection)."""
        sftp = self.ssh.client().open_sftp()
        try:
            sftp.put(str(local), remote)
        finally:
            sftp.close()

    def write_file(self, remote: str, content: str, mode: int = 0o644) -> None:
        """Write `remote` with `mode` from its first byte: the content goes into a new file
        that only its owner can read (umask 077, mktemp beside it), which gets its final
        mode and is then renamed over `remote`. A private key is never readable by others,
        not even while it is written, and an existing file's wider mode is not inherited."""
        target = shlex.quote(remote)
        self.succeed(f"umask 077 && tmp=$(mktemp {shlex.quote(remote + '.xenlab-')}XXXXXX) && "
                     f"{{ cat > \"$tmp\" && chmod {mode:o} \"$tmp\" && mv -f \"$tmp\" {target} || "
                     f"{{ rm -f \"$tmp\"; exit 1; }}; }}", input=content.encode())

    def forget_connections(self) -> None:
        """Drop SSH connections (after reset, power cycle or checkpoint restore)."""
        if self._ssh is not None:
            self._ssh.close()
