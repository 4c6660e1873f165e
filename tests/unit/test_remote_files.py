"""Files xenlab writes on a machine get their final mode from the start: no moment where a
private key (the pool's) lies on a host readable by others. The remote command of
`write_file` is run for real by a local shell; only the SSH transport is left out (no sshd
here), and the content is fed slowly so the file can be looked at while it is written."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest

from xenlab.lab.ssh import CommandResult, RemoteShell
from xenlab.toolstack.xl import POOL_KEY, POOL_KNOWN_HOSTS, migrate_command
from xenlab.waiting import wait_for


class LocalShell(RemoteShell):
    """A RemoteShell whose commands run in a local shell (the same shell language as dom0's)."""

    name = "local"
    _ssh = None

    def __init__(self, watch: Path, private: bytes):
        self.watch, self.private = watch, private
        self.exposed: list[str] = []  # files seen holding the secret with more than the final mode
        self.final_mode = 0

    def run(self, command: str, timeout: float = 60, input: bytes | None = None) -> CommandResult:
        proc = subprocess.Popen(["sh", "-c", command], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
        assert proc.stdin is not None
        half = len(input or b"") // 2
        proc.stdin.write((input or b"")[:half])
        proc.stdin.flush()
        self._look()  # the command is blocked on the rest of its stdin: whatever it created is there now
        proc.stdin.write((input or b"")[half:])
        proc.stdin.close()
        out, err = proc.stdout.read(), proc.stderr.read()
        proc.wait(timeout=timeout)
        return CommandResult(self.name, command, proc.returncode, out.decode(), err.decode(), 0.0)

    def succeed(self, command: str, timeout: float = 60, input: bytes | None = None) -> str:
        result = self.run(command, timeout, input)
        assert result.ok, result.stderr
        return result.stdout

    def _look(self) -> None:
        # until the command has put the first half of the content in some file
        wait_for(lambda: any(p.is_file() and p.read_bytes().startswith(self.private[:16])
                             for p in self.watch.iterdir()), "the content's first half to be written", 10, 0.01)
        for path in self.watch.iterdir():
            mode = stat.S_IMODE(path.lstat().st_mode)
            if path.is_file() and path.read_bytes().startswith(self.private[:16]) and mode & ~self.final_mode:
                self.exposed.append(f"{path.name} {mode:04o}")


@pytest.mark.parametrize("mode", [0o600, 0o644])
def test_write_file_creates_the_file_with_its_final_mode(tmp_path, mode):
    secret = b"-----BEGIN OPENSSH PRIVATE KEY-----\n" + b"x" * 4096 + b"\n"
    shell = LocalShell(tmp_path, secret)
    shell.final_mode = mode
    target = tmp_path / "id_pool"
    (tmp_path / "id_pool").write_text("old")
    os.chmod(target, 0o666)  # an existing file with a wider mode is replaced, not reused
    shell.write_file(str(target), secret.decode(), mode)
    assert target.read_bytes() == secret
    assert stat.S_IMODE(target.stat().st_mode) == mode
    assert shell.exposed == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["id_pool"]  # no temporary left behind


def test_xl_migrate_uses_xenlabs_own_key_and_known_hosts_never_roots():
    command = migrate_command("vm1", "10.1.2.12")
    assert command.startswith("xl migrate -s ")
    assert f"-i {POOL_KEY}" in command and f"UserKnownHostsFile={POOL_KNOWN_HOSTS}" in command
    assert "IdentitiesOnly=yes" in command and "StrictHostKeyChecking=yes" in command
    assert command.endswith(" vm1 10.1.2.12")
    assert POOL_KEY != "/root/.ssh/id_ed25519" and POOL_KNOWN_HOSTS != "/root/.ssh/known_hosts"

