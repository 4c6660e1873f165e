"""LabObserver's reads of the heartbeat log, run by a real shell on this machine.

The services node is replaced by a local shell (the same `date`, `cat` and `awk` run,
only not over SSH), so the parsing, the clock mapping and the wait are the real ones.
"""

from __future__ import annotations

import subprocess
import threading
import time
from pathlib import Path
from types import SimpleNamespace

from xenlab.lab.ssh import CommandResult
from xenlab.observe import LabObserver


class LocalShell:
    """Runs commands with bash here; the interface LabObserver uses on the services node.
    `reads` is set once it has read a heartbeat log."""

    name = "services"

    def __init__(self) -> None:
        self.reads = threading.Event()

    def run(self, command: str, timeout: float = 60, input: bytes | None = None) -> CommandResult:
        if ".log" in command:
            self.reads.set()
        started = time.monotonic()
        done = subprocess.run(["bash", "-c", command], input=input, capture_output=True, timeout=timeout, check=False)
        return CommandResult(self.name, command, done.returncode, done.stdout.decode(), done.stderr.decode(),
                             time.monotonic() - started)

    def succeed(self, command: str, timeout: float = 60, input: bytes | None = None) -> str:
        result = self.run(command, timeout, input)
        assert result.ok, result
        return result.stdout


def observer_on(directory: Path, shell: LocalShell | None = None) -> LabObserver:
    lab = SimpleNamespace(name="t", services=shell or LocalShell(), spec=SimpleNamespace(services=None))
    return LabObserver(lab, sr=str(directory), heartbeat_dir=str(directory))  # type: ignore[arg-type]


def write_beats(path: Path, first_seq: int, times: list[float]) -> None:
    with path.open("a") as f:
        for i, at in enumerate(times):
            f.write(f"vm1 {first_seq + i} {at:.6f}\n")


def test_heartbeats_are_read_back_on_the_local_clock(tmp_path):
    now = time.time()
    write_beats(tmp_path / "vm1.log", 1, [now - 3, now - 2, now - 1])
    (tmp_path / "vm1.log").open("a").write("vm2 1 1.0\ngarbage line\n")
    beats = observer_on(tmp_path).heartbeats("vm1")
    assert [seq for seq, _ in beats] == [1, 2, 3]
    assert all(abs(at - want) < 0.5 for (_, at), want in zip(beats, [now - 3, now - 2, now - 1]))
    assert [seq for seq, _ in observer_on(tmp_path).heartbeats("vm1", since=now - 1.5)] == [3]


def test_a_silence_is_measured_from_one_read_that_holds_the_resumption(tmp_path):
    log = tmp_path / "vm1.log"
    now = time.time()
    write_beats(log, 1, [now - 2, now - 1.5])
    window_end = now

    shell = LocalShell()

    def resume_after_the_first_read() -> None:
        assert shell.reads.wait(timeout=30)  # the observer has read once and found no resumption
        back = time.time()
        write_beats(log, 3, [back, back + 0.01])

    writer = threading.Thread(target=resume_after_the_first_read)
    writer.start()
    series = observer_on(tmp_path, shell).heartbeats_through("vm1", window_end, timeout=30)
    writer.join()
    assert [seq for seq, _ in series] == [1, 2, 3, 4]
    assert max(at for _, at in series) > window_end


def test_a_guest_that_never_comes_back_gives_the_last_read_at_the_timeout(tmp_path):
    now = time.time()
    write_beats(tmp_path / "vm1.log", 1, [now - 2, now - 1])
    series = observer_on(tmp_path).heartbeats_through("vm1", now + 60, timeout=3)
    assert [seq for seq, _ in series] == [1, 2]  # what was there, not an error and not nothing
