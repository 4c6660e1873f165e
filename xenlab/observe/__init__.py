"""What the guests tell us, read from the services node: heartbeats and disk records.

Heartbeat times are taken on the services node; `clock_offset` maps them onto this
process's clock (time.time()) so they compare with the times of toolstack calls. The
offset is measured over SSH (midpoint of the round trip) at every read, because a lab
machine's clock may be stepped (after a checkpoint restore); its error is half the round
trip, which only shifts windows, never the gaps themselves.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from ..errors import WaitTimeout, XenlabError
from ..metrics import RECORD_SIZE, IntegrityReport, verify_records
from ..spec import SR_PATH
from ..waiting import wait_for
from .collector import DISK_PREFIX_SOURCE, HEARTBEAT_DIR, TOOLS_DIR

if TYPE_CHECKING:
    from ..lab import Lab


class LabObserver:
    """Heartbeats and disk records of a QEMU lab's guests, read on its services node."""

    def __init__(self, lab: Lab, sr: str | None = None, heartbeat_dir: str = HEARTBEAT_DIR):
        self.lab = lab
        self.heartbeat_dir = heartbeat_dir
        self.sr = sr or (lab.spec.services.nfs_export if lab.spec.services else SR_PATH)

    @property
    def services(self):
        if self.lab.services is None:
            raise XenlabError(f"lab {self.lab.name} has no services node to collect heartbeats")
        return self.lab.services

    def clock_offset(self, samples: int = 3) -> float:
        """services-node time minus local time (best of `samples` round trips)."""
        measured = []
        for _ in range(samples):
            before = time.time()
            remote = float(self.services.succeed("date +%s.%N", timeout=30))
            after = time.time()
            measured.append((after - before, remote - (before + after) / 2))
        return min(measured)[1]

    def heartbeats(self, vm: str, since: float | None = None) -> list[tuple[int, float]]:
        """(seq, arrival time on this process's clock) of every heartbeat of `vm`."""
        offset = self.clock_offset()
        path = f"{self.heartbeat_dir}/{vm}.log"
        command = f"cat {path} 2>/dev/null"
        if since is not None:
            command = f"awk '$3 >= {since + offset:.6f}' {path} 2>/dev/null"
        out = self.services.run(command, timeout=120).stdout
        series = []
        for line in out.splitlines():
            parts = line.split()
            if len(parts) == 3 and parts[0] == vm:
                series.append((int(parts[1]), float(parts[2]) - offset))
        return series

    def first_heartbeat_after(self, vm: str, after: float, timeout: float) -> float | None:
        """Arrival time of the first heartbeat after `after`, waiting up to `timeout`."""
        found: list[float] = []

        def arrived() -> bool:
            beats = self.heartbeats(vm, since=after)
            if beats:
                found.append(min(t for _, t in beats))
            return bool(found)

        try:
            wait_for(arrived, f"a heartbeat from {vm}", timeout, 2.0)
        except Exception:  # noqa: BLE001 - "never came back" is a measured outcome, not an error
            return None
        return found[0]

    def heartbeats_through(self, vm: str, after: float, timeout: float,
                           since: float | None = None) -> list[tuple[int, float]]:
        """One read of `vm`'s heartbeats that already holds one later than `after`.

        Measure a silence from a single read: two reads map the services node's times with
        two clock offsets, each off by up to half an SSH round trip, so a heartbeat seen
        just after `after` by one read can fall before it in the next. At `timeout` the
        last read is returned as it is (the metrics then say which end is missing).
        """
        latest: list[list[tuple[int, float]]] = [[]]

        def resumed() -> bool:
            latest[0] = self.heartbeats(vm, since=since)
            return any(at > after for _, at in latest[0])

        try:
            wait_for(resumed, f"a heartbeat from {vm} after {after:.2f}", timeout, 2.0)
        except WaitTimeout:
            pass  # "never came back" is a measured outcome, not an error
        return latest[0]

    def verify_disk(self, vm: str) -> IntegrityReport:
        """Check the records `vm`'s writer put on its disk (read on the services node)."""
        disk = f"{self.sr}/guests/{vm}/disk.img"
        self.services.succeed(f"mkdir -p {TOOLS_DIR}")
        self.services.write_file(f"{TOOLS_DIR}/disk_prefix.py", DISK_PREFIX_SOURCE)
        ssh = self.services.ssh.client()
        _, stdout, _ = ssh.exec_command(f"python3 {TOOLS_DIR}/disk_prefix.py {disk} {RECORD_SIZE} 1048576",
                                        timeout=120)
        data = stdout.read()
        return verify_records(data, RECORD_SIZE)
