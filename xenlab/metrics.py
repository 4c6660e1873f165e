"""Pure measurements of what guests report: heartbeat gaps, downtime, recovery, disk integrity.

Nothing here talks to a lab; every function takes recorded data, so each one is tested on
synthetic or recorded series and the same arithmetic serves every toolstack.

Heartbeats
----------
Every guest sends a UDP datagram to the collector on the services node every 10 ms. It
carries a sequence number that starts at 0 when the sender starts, so it restarts after
the guest reboots (a failover restart). The collector records `(seq, receive_time)`
pairs; receive times must be on the clock of the process that runs the scenario
(`time.time()`), because they are compared with the times of toolstack calls.

A series may arrive reordered, with duplicates, with packets lost, and with the counter
restarted. `clean` turns it into receipts in time order, each tagged with an *epoch*
(one run of the sender):

- a sequence number above every one seen in the epoch is progress;
- one at or below the highest, arriving within `reorder_window_s` of the highest, is a
  late packet (kept) or, if already seen, a duplicate (dropped);
- one at or below the highest arriving later than that is a restarted sender: a new epoch.

An *interval* is the time between two consecutive receipts. Two counts describe it:

- `missed`: the 10 ms slots in it without a heartbeat (from the time alone). A paused
  guest (the stop-and-copy phase of a live migration) sends nothing, so its silence is
  missed heartbeats, not lost ones (the step figure `heartbeat_slots_empty`; it was
  called `heartbeats_missed` in results/1 files);
- `lost`: heartbeats sent but never received (sequence numbers jumped over and not
  arriving even late): what the network dropped. Across a counter restart nobody knows
  what the dead sender had sent, so there `lost` is the `missed` estimate.

Disk records
------------
The in-guest writer fills the guest's data disk with fixed-size records, record N at
byte offset N * 512 (so a record's place is its sequence number). A record of 512 bytes
(`RECORD_SIZE`) is ASCII::

    bytes   0..15   seq, 16 decimal digits, zero-padded           "0000000000000042"
    byte    16      a space
    bytes  17..80   sha256 of (the 16 seq digits + the filler), 64 lowercase hex digits
    byte    81      a space
    bytes  82..510  filler: 429 copies of the last decimal digit of seq   "2222...2"
    byte   511      a newline

With another record size R the filler is R - 83 bytes. The hash covers exactly the 16
seq characters followed by the filler, with nothing between them and no newline, so
busybox produces a record with::

    s=$(printf %016d "$seq")
    f=$(printf "%429s" "" | tr ' ' "$((seq % 10))")
    h=$(printf %s%s "$s" "$f" | sha256sum | cut -c1-64)
    printf '%s %s %s\n' "$s" "$h" "$f" |
        dd of=/dev/xvdb bs=512 seek="$seq" count=1 conv=notrunc iflag=fullblock oflag=direct

The disk starts zeroed. `verify_records` reads records from offset 0 until the first
all-zero record (the end of what was written); every record before must be intact and
hold its own index as seq, and nothing may be written after that end (a lost write).
A restarted writer resumes at the first all-zero record.
"""

from __future__ import annotations

import bisect
import hashlib
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

HEARTBEAT_INTERVAL_S = 0.01
RECORD_SIZE = 512
SEQ_DIGITS = 16
HASH_HEX = 64
_HEADER = SEQ_DIGITS + 1 + HASH_HEX + 1  # seq, space, hash, space: the filler starts here

Series = Sequence[tuple[int, float]]


# -- heartbeats -------------------------------------------------------------------------
@dataclass(frozen=True)
class Receipt:
    """One heartbeat kept by `clean`: its sequence number, arrival time and sender epoch."""

    seq: int
    at: float
    epoch: int


@dataclass(frozen=True)
class Gap:
    """Silence between two consecutive heartbeats: from the last before to the first after."""

    start: float
    end: float
    seconds: float
    lost: int  # heartbeats sent but never received (estimated from time across a restart)
    missed: int = 0  # 10 ms slots without a heartbeat
    restarted: bool = False  # the sender's counter restarted across this gap (guest rebooted)


@dataclass(frozen=True)
class DowntimeStats:
    """The largest gap overlapping a switch-over window; `downtime_s` None says why in `reason`."""

    downtime_s: float | None
    heartbeats_lost: int | None  # sent but never received, over every interval overlapping the window
    gap_start: float | None = None
    gap_end: float | None = None
    restarted: bool = False
    reason: str = ""
    heartbeats_missed: int | None = None  # 10 ms slots without a heartbeat, over the same intervals


@dataclass(frozen=True)
class Recovery:
    """From a fault to the first heartbeat after the silence it caused."""

    seconds: float | None
    stopped_at: float | None = None  # last heartbeat before the silence
    resumed_at: float | None = None  # first heartbeat after it
    restarted: bool = False  # the guest came back rebooted (its counter restarted)
    reason: str = ""


def clean(series: Iterable[tuple[int, float]], reorder_window_s: float = 1.0) -> list[Receipt]:
    """Receipts in time order without duplicates, each tagged with its sender epoch."""
    ordered = sorted(((int(seq), float(at)) for seq, at in series), key=lambda p: (p[1], p[0]))
    receipts: list[Receipt] = []
    epoch = 0
    seen: set[int] = set()
    highest: int | None = None
    highest_at = 0.0
    for seq, at in ordered:
        if highest is None or seq > highest:
            highest, highest_at = seq, at
        elif at - highest_at <= reorder_window_s:
            if seq in seen:
                continue  # a duplicate
        else:
            epoch += 1
            seen = set()
            highest, highest_at = seq, at
        seen.add(seq)
        receipts.append(Receipt(seq, at, epoch))
    return receipts


def intervals(receipts: Sequence[Receipt], interval_s: float = HEARTBEAT_INTERVAL_S) -> list[Gap]:
    """Every interval between consecutive receipts, with the heartbeats lost inside it."""
    n = len(receipts)
    if n < 2:
        return []
    # A sequence number is lost if it was never received; it belongs to the interval where
    # the highest seq of the epoch jumps over it (a late packet is received, not lost).
    highest_upto: list[int] = []
    received: dict[int, list[int]] = {}
    for i, r in enumerate(receipts):
        same = i > 0 and receipts[i - 1].epoch == r.epoch
        highest_upto.append(max(highest_upto[-1], r.seq) if same else r.seq)
        received.setdefault(r.epoch, []).append(r.seq)
    for seqs in received.values():
        seqs.sort()
    result = []
    for i in range(n - 1):
        a, b = receipts[i], receipts[i + 1]
        seconds = b.at - a.at
        missed = max(0, round(seconds / interval_s) - 1)
        if a.epoch == b.epoch:
            low, high = highest_upto[i], b.seq
            lost = 0
            if high > low + 1:
                seqs = received[a.epoch]
                late = bisect.bisect_left(seqs, high) - bisect.bisect_right(seqs, low)
                lost = high - low - 1 - late
            result.append(Gap(a.at, b.at, seconds, lost, missed))
        else:
            result.append(Gap(a.at, b.at, seconds, missed, missed, restarted=True))
    return result


def gaps(series: Series, min_gap_s: float = 0.1, interval_s: float = HEARTBEAT_INTERVAL_S) -> list[Gap]:
    """Silences longer than `min_gap_s` (default: ten missed heartbeats), in time order."""
    return [g for g in intervals(clean(series), interval_s) if g.seconds > min_gap_s]


def downtime_around(series: Series, window_start: float, window_end: float,
                    interval_s: float = HEARTBEAT_INTERVAL_S) -> DowntimeStats:
    """The largest silence overlapping [window_start, window_end], e.g. a migration call.

    The guest must have been heard before the window and again after it; otherwise the
    downtime cannot be known and `reason` says which end is missing.
    """
    receipts = clean(series)
    if not receipts:
        return DowntimeStats(None, None, reason="no heartbeat was received from the guest")
    first, last = receipts[0], receipts[-1]
    if first.at > window_start:
        return DowntimeStats(None, None, reason=f"no heartbeat before the window: the first came "
                                                f"{first.at - window_start:.2f} s after its start")
    if last.at < window_end:
        return DowntimeStats(None, None, gap_start=last.at,
                             reason=f"heartbeats stopped {max(0.0, last.at - window_start):.2f} s into the window "
                                    f"and had not resumed {window_end - last.at:.2f} s later, at its end")
    overlapping = [g for g in intervals(receipts, interval_s) if g.start <= window_end and g.end >= window_start]
    if not overlapping:  # a single receipt exactly at both ends: nothing was missed
        return DowntimeStats(0.0, 0, reason="a heartbeat arrived at both ends of the window", heartbeats_missed=0)
    largest = max(overlapping, key=lambda g: g.seconds)
    return DowntimeStats(largest.seconds, sum(g.lost for g in overlapping), largest.start, largest.end,
                         restarted=any(g.restarted for g in overlapping),
                         heartbeats_missed=sum(g.missed for g in overlapping))


def recovery_time(series: Series, fault_at: float, until: float | None = None, min_gap_s: float = 0.5,
                  interval_s: float = HEARTBEAT_INTERVAL_S) -> Recovery:
    """Seconds from `fault_at` to the first heartbeat after the first silence it caused.

    The fault's silence is the first interval of at least `min_gap_s` that ends after the
    fault, starting from the last heartbeat at or before it. `until` is when the series
    was read: if the guest has been silent since then for `min_gap_s`, it has not
    recovered (None). Without such a silence the guest never stopped (0 s).
    """
    receipts = clean(series)
    if not receipts:
        return Recovery(None, reason="no heartbeat was received from the guest")
    heard_before = [i for i, r in enumerate(receipts) if r.at <= fault_at]
    if not heard_before:
        first = receipts[0]
        if first.at - fault_at >= min_gap_s:
            return Recovery(first.at - fault_at, None, first.at, reason="not heard before the fault")
        start = 0
    else:
        start = heard_before[-1]
        if start == len(receipts) - 1:
            tail = receipts[start]
            return Recovery(None, stopped_at=tail.at, reason=f"no heartbeat since the fault (the last came "
                                                             f"{fault_at - tail.at:.2f} s before it)")
    for gap in intervals(receipts[start:], interval_s):
        if gap.end > fault_at and gap.seconds >= min_gap_s:
            return Recovery(gap.end - fault_at, gap.start, gap.end, gap.restarted)
    last = receipts[-1]
    if until is not None and until - last.at >= min_gap_s:
        return Recovery(None, stopped_at=last.at,
                        reason=f"heartbeats stopped {last.at - fault_at:.2f} s after the fault and "
                               f"had not resumed {until - last.at:.2f} s later")
    return Recovery(0.0, reason="heartbeats did not stop")


@dataclass(frozen=True)
class Buckets:
    """Heartbeats received per bucket of `bucket_s` from `start`: a silence is a run of zeros."""

    start: float
    bucket_s: float
    counts: list[int]


def bucket_width(span_s: float, max_buckets: int, base_s: float = 0.1) -> float:
    """`base_s`, or the smallest multiple of it that covers `span_s` in `max_buckets` buckets."""
    return base_s * max(1, math.ceil(span_s / base_s / max_buckets - 1e-9))


def bucket_counts(series: Series, start: float, end: float, max_buckets: int = 1200,
                  base_s: float = 0.1) -> Buckets:
    """Count the heartbeats (after `clean`: no duplicates) arriving in each whole bucket of [start, end).

    10 ms heartbeats in 100 ms buckets count 10 each when steady; the counts are the rate
    over time, compact enough to keep for every event of a run, while the exact ends of
    a silence come from `downtime_around` or `recovery_time`.
    """
    if end <= start:
        return Buckets(start, base_s, [])
    width = bucket_width(end - start, max_buckets, base_s)
    n = min(max_buckets, max(1, math.floor((end - start) / width + 1e-9)))  # a partial last bucket would read low
    counts = [0] * n
    for receipt in clean(series):
        index = math.floor((receipt.at - start) / width)
        if 0 <= index < n:
            counts[index] += 1
    return Buckets(start, width, counts)


# -- statistics -------------------------------------------------------------------------
def percentile(values: Sequence[float], p: float) -> float:
    """Linear interpolation between closest ranks (numpy's default), p in 0..100."""
    if not values:
        raise ValueError("percentile of no values")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * p / 100.0
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def summarize(values: Iterable[float | None]) -> dict[str, float | None]:
    """count, min, p50, p90, p99, max, mean of the measured values (None ones are left out)."""
    measured = [float(v) for v in values if v is not None]
    if not measured:
        return {"count": 0, "min": None, "p50": None, "p90": None, "p99": None, "max": None, "mean": None}
    return {
        "count": len(measured),
        "min": min(measured),
        "p50": percentile(measured, 50),
        "p90": percentile(measured, 90),
        "p99": percentile(measured, 99),
        "max": max(measured),
        "mean": sum(measured) / len(measured),
    }


# -- disk records -----------------------------------------------------------------------
@dataclass(frozen=True)
class IntegrityReport:
    """What the verifier found on a guest's data disk."""

    records: int  # intact records from the start
    first_bad: int | None  # index of the first damaged record (or the hole), None if ok
    ok: bool
    last_seq: int | None  # seq of the last intact record
    reason: str = ""


def filler_char(seq: int) -> str:
    return str(seq % 10)


def _digest(seq_field: bytes, filler: bytes) -> bytes:
    return hashlib.sha256(seq_field + filler).hexdigest().encode()


def encode_record(seq: int, record_size: int = RECORD_SIZE) -> bytes:
    """The record the in-guest writer puts at offset seq * record_size (see the module docstring)."""
    filler_len = record_size - _HEADER - 1
    if filler_len < 1:
        raise ValueError(f"a record needs at least {_HEADER + 2} bytes, not {record_size}")
    if not 0 <= seq < 10**SEQ_DIGITS:
        raise ValueError(f"seq {seq} does not fit in {SEQ_DIGITS} digits")
    seq_field = f"{seq:0{SEQ_DIGITS}d}".encode()
    filler = filler_char(seq).encode() * filler_len
    return seq_field + b" " + _digest(seq_field, filler) + b" " + filler + b"\n"


def _record_problem(record: bytes, index: int) -> str:
    seq_field, filler = record[:SEQ_DIGITS], record[_HEADER:-1]
    if record[SEQ_DIGITS:SEQ_DIGITS + 1] != b" " or record[_HEADER - 1:_HEADER] != b" " or record[-1:] != b"\n":
        return "not a record (spaces or newline out of place)"
    if not seq_field.isdigit():
        return f"seq field {seq_field[:SEQ_DIGITS].decode(errors='replace')!r} is not a number"
    seq = int(seq_field)
    if seq != index:
        return f"holds seq {seq}, expected {index} (a write landed in the wrong place)"
    expected = filler_char(seq).encode()
    if filler.count(expected) != len(filler):
        offset = next(i for i, b in enumerate(filler) if b != expected[0])
        return f"filler damaged at byte {_HEADER + offset}"
    if record[SEQ_DIGITS + 1:_HEADER - 1] != _digest(seq_field, filler):
        return "checksum mismatch"
    return ""


def verify_records(data: bytes, record_size: int = RECORD_SIZE) -> IntegrityReport:
    """Check the records written so far (see the module docstring); the first problem wins."""
    if record_size < _HEADER + 2:
        raise ValueError(f"a record needs at least {_HEADER + 2} bytes, not {record_size}")
    whole = len(data) // record_size
    empty = bytes(record_size)
    end: int | None = None
    for index in range(whole):
        record = data[index * record_size:(index + 1) * record_size]
        if record == empty:
            end = index
            break
        problem = _record_problem(record, index)
        if problem:
            return IntegrityReport(index, index, False, index - 1 if index else None, f"record {index}: {problem}")
    records = whole if end is None else end
    last_seq = records - 1 if records else None
    if end is not None:
        rest = data[(end + 1) * record_size:]
        written = len(rest) - len(rest.lstrip(b"\0"))
        if written < len(rest):
            later = end + 1 + written // record_size
            return IntegrityReport(records, end, False, last_seq,
                                   f"record {end} is empty but record {later} after it is written: a write was lost")
    elif len(data) % record_size:
        return IntegrityReport(records, whole, False, last_seq,
                               f"truncated: the last {len(data) % record_size} bytes are not a whole "
                               f"{record_size}-byte record")
    return IntegrityReport(records, None, True, last_seq)
