"""Pure parsers of what the qualification checks run on the hosts: iperf3 and fio JSON,
ping's summary, the guest traffic agent's console lines, and kernel and hypervisor logs
filtered by the profile's allow-list.

Each returns plain numbers in a stated unit, or raises ParseError saying what was
missing (a check turns that into a failed verdict with the tool's own words).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass


class ParseError(ValueError):
    """The tool's output does not hold what the check measures."""


def _json(text: str, tool: str) -> dict:
    try:
        data = json.loads(text)
    except ValueError:
        raise ParseError(f"{tool} printed no JSON: {text.strip()[-300:] or '(nothing)'}") from None
    if not isinstance(data, dict):
        raise ParseError(f"{tool} printed JSON that is not an object")
    if data.get("error"):
        raise ParseError(f"{tool}: {data['error']}")
    return data


@dataclass(frozen=True)
class Iperf:
    mbit_s: float  # received by the server, megabits per second
    retransmits: int | None  # TCP retransmits on the sender (None where iperf3 does not know)
    seconds: float


def parse_iperf3(text: str) -> Iperf:
    """`iperf3 -c ADDR -J` output."""
    end = _json(text, "iperf3").get("end") or {}
    received = end.get("sum_received") or {}
    sent = end.get("sum_sent") or {}
    bps = received.get("bits_per_second", sent.get("bits_per_second"))
    if bps is None:
        raise ParseError("iperf3 JSON has no end.sum_received.bits_per_second")
    retransmits = sent.get("retransmits")
    return Iperf(mbit_s=float(bps) / 1e6, retransmits=int(retransmits) if retransmits is not None else None,
                 seconds=float(received.get("seconds", sent.get("seconds", 0.0))))


@dataclass(frozen=True)
class FioSide:
    mib_s: float
    iops: float
    latency_ms: float  # mean completion latency


def parse_fio(text: str) -> dict[str, FioSide]:
    """`fio --output-format=json` of one job -> {'read': ..., 'write': ...} for the sides that did I/O."""
    jobs = _json(text, "fio").get("jobs") or []
    if not jobs:
        raise ParseError("fio JSON has no jobs")
    job = jobs[0]
    if job.get("error"):
        raise ParseError(f"fio job {job.get('jobname', '?')} failed with error {job['error']}")
    sides: dict[str, FioSide] = {}
    for side in ("read", "write"):
        data = job.get(side) or {}
        if not data.get("io_bytes"):
            continue
        latency = data.get("clat_ns") or data.get("lat_ns") or {}
        sides[side] = FioSide(mib_s=float(data.get("bw_bytes", data.get("bw", 0) * 1024)) / 2**20,
                              iops=float(data.get("iops", 0.0)),
                              latency_ms=float(latency.get("mean", 0.0)) / 1e6)
    if not sides:
        raise ParseError("fio did no I/O (io_bytes 0 on both sides)")
    return sides


@dataclass(frozen=True)
class Ping:
    sent: int
    received: int
    loss_pct: float
    avg_ms: float | None
    max_ms: float | None


_PING_COUNTS = re.compile(r"(\d+) packets transmitted, (\d+) (?:packets )?received.*?([\d.]+)% packet loss")
_PING_RTT = re.compile(r"(?:rtt|round-trip) min/avg/max(?:/mdev)? = ([\d.]+)/([\d.]+)/([\d.]+)")


def parse_ping(text: str) -> Ping:
    """The summary lines of iputils or busybox ping."""
    counts = _PING_COUNTS.search(text)
    if not counts:
        raise ParseError(f"no ping summary in: {text.strip()[-300:] or '(nothing)'}")
    rtt = _PING_RTT.search(text)
    return Ping(int(counts.group(1)), int(counts.group(2)), float(counts.group(3)),
                float(rtt.group(2)) if rtt else None, float(rtt.group(3)) if rtt else None)


@dataclass(frozen=True)
class Stream:
    direction: str  # received | sent
    bytes: int
    seconds: float
    peer: str

    @property
    def mbit_s(self) -> float:
        return self.bytes * 8 / self.seconds / 1e6 if self.seconds > 0 else 0.0


_TRAFFIC = re.compile(r"xenlab-traffic: (received|sent) (\d+) bytes in ([\d.]+) s (?:from|to) ([\d.]+)")


def parse_traffic(console: str, direction: str = "received") -> Stream:
    """The last stream line the guest agent xenlab-traffic printed on a guest's console."""
    found = [m for m in _TRAFFIC.finditer(console) if m.group(1) == direction]
    if not found:
        failed = re.findall(r"xenlab-traffic: (?!received|sent).*", console)
        raise ParseError(failed[-1].strip() if failed else
                         f"no 'xenlab-traffic: {direction}' line on the guest's console")
    last = found[-1]
    return Stream(last.group(1), int(last.group(2)), float(last.group(3)), last.group(4))


# Xen's `xl dmesg` carries no level on its lines: these words mark a warning or worse.
XEN_SERIOUS = re.compile(r"\b(?:warn\w*|errors?|fail\w*|panic\w*|fatal|bug|assert\w*|crash\w*|unhandled|denied|"
                         r"corrupt\w*)\b|\*\*\*", re.IGNORECASE)


@dataclass(frozen=True)
class LogVerdict:
    unexpected: list[str]
    allowed: dict[str, int]  # allow pattern -> lines it let through


def filter_log(lines: Iterable[str], allow: Iterable[str], serious: re.Pattern[str] | None = None) -> LogVerdict:
    """Lines not matched by any allow pattern. `serious`: keep only lines it matches first
    (for logs without levels, like Xen's); dom0's `dmesg --level=warn,...` is filtered already."""
    patterns = [(text, re.compile(text)) for text in allow]
    unexpected: list[str] = []
    allowed: dict[str, int] = {}
    for raw in lines:
        line = raw.rstrip()
        if not line.strip() or (serious is not None and not serious.search(line)):
            continue
        hit = next((text for text, pattern in patterns if pattern.search(line)), None)
        if hit is None:
            unexpected.append(line)
        else:
            allowed[hit] = allowed.get(hit, 0) + 1
    return LogVerdict(unexpected, allowed)
