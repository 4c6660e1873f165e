"""Heartbeat gaps, downtime, recovery, statistics and disk records on synthetic data."""

import hashlib
import random
import shutil
import subprocess

import pytest

from xenlab.metrics import (
    RECORD_SIZE,
    clean,
    downtime_around,
    encode_record,
    gaps,
    percentile,
    recovery_time,
    summarize,
    verify_records,
)

STEP = 0.01


def beats(first_seq: int, start: float, count: int) -> list[tuple[int, float]]:
    """`count` heartbeats every 10 ms from `start`, numbered from `first_seq`."""
    return [(first_seq + i, round(start + i * STEP, 6)) for i in range(count)]


def with_outage(lost_from: int, lost_to: int, total: int = 500, start: float = 1000.0) -> list[tuple[int, float]]:
    """A steady series whose heartbeats lost_from..lost_to-1 never arrived."""
    return [b for b in beats(0, start, total) if not lost_from <= b[0] < lost_to]


# -- gaps -------------------------------------------------------------------------------
def test_a_steady_series_has_no_gaps():
    assert gaps(beats(0, 1000.0, 300)) == []


def test_lost_heartbeats_make_one_gap_with_the_exact_count():
    [gap] = gaps(with_outage(200, 350))
    assert (gap.lost, gap.missed) == (150, 150)
    assert gap.start == pytest.approx(1000.0 + 199 * STEP)
    assert gap.end == pytest.approx(1000.0 + 350 * STEP)
    assert gap.seconds == pytest.approx(1.51)
    assert not gap.restarted


def test_a_paused_sender_misses_heartbeats_without_losing_any():
    series = beats(0, 1000.0, 200) + beats(200, 1005.0, 100)  # silent from 1001.99 to 1005.0, count unbroken
    [gap] = gaps(series)
    assert (gap.lost, gap.missed) == (0, 300)
    stats = downtime_around(series, 1001.5, 1005.5)
    assert (stats.heartbeats_lost, stats.heartbeats_missed) == (0, 300)


def test_short_jitter_below_the_threshold_is_not_a_gap():
    assert gaps(with_outage(100, 105)) == []
    assert len(gaps(with_outage(100, 105), min_gap_s=0.05)) == 1


def test_duplicates_are_dropped():
    series = with_outage(200, 350)
    doubled = series + [(seq, at + 0.001) for seq, at in series[::7]]
    assert len(clean(doubled)) == len(series)
    assert gaps(doubled) == gaps(series)


def test_reordered_packets_are_neither_gaps_nor_losses():
    series = beats(0, 1000.0, 400)
    shuffled = list(series)
    for i in range(10, 390, 25):  # deliver some heartbeats 15 ms late, after their successors
        seq, at = shuffled[i]
        shuffled[i] = (seq, at + 0.015)
    random.Random(1).shuffle(shuffled)  # and hand them over in any order
    assert gaps(shuffled) == []
    stats = downtime_around(shuffled, 1001.0, 1002.0)
    assert stats.heartbeats_lost == 0
    assert stats.downtime_s < 0.02


def test_a_late_packet_inside_an_outage_splits_nothing_and_is_not_lost():
    series = with_outage(200, 350) + [(260, 1000.0 + 350 * STEP + 0.002)]  # seq 260 arrives after 350
    stats = downtime_around(series, 1002.0, 1003.0)
    assert stats.heartbeats_lost == 149
    assert stats.downtime_s == pytest.approx(1.51)


def test_a_restarted_counter_is_a_new_epoch_and_the_loss_is_estimated_from_time():
    before = beats(0, 1000.0, 300)  # until 1002.99
    after = beats(0, 1008.0, 200)  # the guest rebooted: seq starts again
    [gap] = gaps(before + after)
    assert gap.restarted
    assert gap.seconds == pytest.approx(5.01)
    assert gap.lost == 500
    assert {r.epoch for r in clean(before + after)} == {0, 1}


# -- downtime ---------------------------------------------------------------------------
def test_downtime_is_the_largest_gap_overlapping_the_window():
    series = [b for b in beats(0, 1000.0, 3000) if not (500 <= b[0] < 800 or 1200 <= b[0] < 1300
                                                         or 2000 <= b[0] < 2600)]
    stats = downtime_around(series, 1004.0, 1014.0)  # overlaps the 3.01 s and 1.01 s gaps, not the 6.01 s one
    assert stats.downtime_s == pytest.approx(3.01)
    assert stats.heartbeats_lost == 400  # every heartbeat lost inside the window
    assert stats.gap_start == pytest.approx(1004.99)
    assert stats.gap_end == pytest.approx(1008.0)


def test_downtime_across_a_guest_restart_is_flagged():
    series = beats(0, 1000.0, 300) + beats(0, 1008.0, 300)
    stats = downtime_around(series, 1002.5, 1007.0)
    assert stats.restarted
    assert stats.downtime_s == pytest.approx(5.01)


def test_no_heartbeats_means_no_downtime_and_says_why():
    stats = downtime_around([], 1000.0, 1010.0)
    assert stats.downtime_s is None and "no heartbeat" in stats.reason


def test_heartbeats_that_never_resume_give_no_downtime():
    stats = downtime_around(beats(0, 1000.0, 300), 1002.0, 1010.0)
    assert stats.downtime_s is None
    assert "had not resumed" in stats.reason
    assert stats.gap_start == pytest.approx(1002.99)


def test_a_guest_first_heard_inside_the_window_gives_no_downtime():
    stats = downtime_around(beats(0, 1005.0, 300), 1002.0, 1006.0)
    assert stats.downtime_s is None and "before the window" in stats.reason


# -- recovery ---------------------------------------------------------------------------
def test_recovery_runs_from_the_fault_to_the_first_heartbeat_after_its_silence():
    series = beats(0, 1000.0, 500) + beats(0, 1050.0, 100)  # power cut at 1005, restarted guest at 1050
    recovery = recovery_time(series, fault_at=1005.0)
    assert recovery.seconds == pytest.approx(45.0)
    assert recovery.restarted
    assert recovery.stopped_at == pytest.approx(1004.99)


def test_recovery_ignores_jitter_before_the_real_silence():
    series = [b for b in beats(0, 1000.0, 800) if not 520 <= b[0] < 540] + beats(0, 1030.0, 50)
    recovery = recovery_time(series, fault_at=1005.0)  # the 0.2 s blip at 1005.2 is not the fault's silence
    assert recovery.seconds == pytest.approx(25.0)


def test_recovery_is_unknown_while_the_guest_stays_silent():
    series = beats(0, 1000.0, 505)  # a few heartbeats in flight after the fault, then nothing
    recovery = recovery_time(series, fault_at=1005.0, until=1030.0)
    assert recovery.seconds is None and "had not resumed" in recovery.reason
    assert recovery_time(beats(0, 1000.0, 500), fault_at=1005.0).seconds is None


def test_recovery_of_a_guest_that_never_stopped_is_zero():
    recovery = recovery_time(beats(0, 1000.0, 1000), fault_at=1005.0, until=1010.0)
    assert recovery.seconds == 0.0 and "did not stop" in recovery.reason


def test_recovery_when_the_guest_was_already_silent_at_the_fault():
    series = beats(0, 1000.0, 100) + beats(100, 1020.0, 100)  # silent from 1000.99 to 1020
    assert recovery_time(series, fault_at=1010.0).seconds == pytest.approx(10.0)


# -- statistics -------------------------------------------------------------------------
def test_summary_statistics_interpolate_between_ranks():
    summary = summarize([10, 1, 2, 3, 4, 5, 6, 7, 8, 9])
    assert summary == {"count": 10, "min": 1, "p50": 5.5, "p90": pytest.approx(9.1), "p99": pytest.approx(9.91),
                       "max": 10, "mean": 5.5}


def test_summary_of_one_and_of_none():
    assert summarize([2.5])["p99"] == 2.5
    assert summarize([None, 3.0, None])["count"] == 1
    assert summarize([]) == {"count": 0, "min": None, "p50": None, "p90": None, "p99": None, "max": None,
                             "mean": None}
    with pytest.raises(ValueError):
        percentile([], 50)


# -- disk records -----------------------------------------------------------------------
def disk(records: int, size_records: int = 256) -> bytearray:
    data = bytearray(size_records * RECORD_SIZE)
    for seq in range(records):
        data[seq * RECORD_SIZE:(seq + 1) * RECORD_SIZE] = encode_record(seq)
    return data


def test_record_layout():
    record = encode_record(42)
    assert len(record) == RECORD_SIZE
    seq, digest, filler = record[:-1].split(b" ")
    assert seq == b"0000000000000042"
    assert filler == b"2" * 429 and record.endswith(b"\n")
    assert digest == hashlib.sha256(seq + filler).hexdigest().encode()


@pytest.mark.parametrize("shell", [["sh"], ["busybox", "sh"]], ids=["sh", "busybox"])
def test_the_documented_shell_recipe_writes_the_same_record(shell, tmp_path):
    if not shutil.which(shell[0]) or not shutil.which("sha256sum"):
        pytest.skip(f"{shell[0]} or sha256sum not installed")
    script = (
        'seq=1234567; s=$(printf %016d "$seq"); f=$(printf "%429s" "" | tr " " "$((seq % 10))"); '
        'h=$(printf %s%s "$s" "$f" | sha256sum | cut -c1-64); printf "%s %s %s\\n" "$s" "$h" "$f"'
    )
    produced = subprocess.run([*shell, "-c", script], capture_output=True, check=True).stdout
    assert produced == encode_record(1234567)


def test_intact_records_verify():
    report = verify_records(bytes(disk(100)))
    assert (report.ok, report.records, report.last_seq, report.first_bad) == (True, 100, 99, None)


def test_an_empty_disk_is_intact_with_no_records():
    report = verify_records(bytes(RECORD_SIZE * 8))
    assert (report.ok, report.records, report.last_seq) == (True, 0, None)


def test_a_full_disk_is_intact():
    assert verify_records(bytes(disk(16, size_records=16))).records == 16


def test_a_flipped_filler_byte_is_found():
    data = disk(100)
    data[37 * RECORD_SIZE + 300] ^= 0x01
    report = verify_records(bytes(data))
    assert (report.ok, report.first_bad, report.records, report.last_seq) == (False, 37, 37, 36)
    assert "filler damaged at byte 300" in report.reason


def test_a_damaged_checksum_is_found():
    data = disk(100)
    data[5 * RECORD_SIZE + 20] = ord("x")
    report = verify_records(bytes(data))
    assert report.first_bad == 5 and "checksum mismatch" in report.reason


def test_a_record_in_the_wrong_place_is_found():
    data = disk(100)
    data[10 * RECORD_SIZE:11 * RECORD_SIZE] = encode_record(11)
    report = verify_records(bytes(data))
    assert report.first_bad == 10 and "holds seq 11, expected 10" in report.reason


def test_a_hole_before_later_records_is_a_lost_write():
    data = disk(100)
    data[60 * RECORD_SIZE:61 * RECORD_SIZE] = bytes(RECORD_SIZE)
    report = verify_records(bytes(data))
    assert (report.ok, report.first_bad, report.records) == (False, 60, 60)
    assert "record 61 after it is written" in report.reason


def test_a_truncated_file_is_not_intact():
    data = bytes(disk(50, size_records=50))[:49 * RECORD_SIZE + 200]
    report = verify_records(data)
    assert (report.ok, report.first_bad, report.records, report.last_seq) == (False, 49, 49, 48)
    assert "truncated" in report.reason


def test_other_record_sizes_work_and_tiny_ones_are_refused():
    data = b"".join(encode_record(seq, 128) for seq in range(20)) + bytes(128 * 4)
    assert verify_records(data, 128).records == 20
    assert not verify_records(data, 512).ok
    with pytest.raises(ValueError):
        encode_record(1, 80)
