"""The migration profile's reading of `xl -vvv migrate` lines and of /proc/stat."""

from __future__ import annotations

import pytest

from xenlab.migration_profile import CpuCounters, TimedLine, busy_share, parse_proc_stat, profile

LINES = [  # the marks in xl's own words (tools/xl/xl_migrate.c), at made-up arrival times
    (0.9, "migration target: Ready to receive domain."),
    (1.0, "Saving to migration stream new xl format (info 0x3/0x0/1513)"),
    (6.5, "libxl: debug: libxl_dom_suspend.c:187:domain_suspend_callback_common: issuing PV suspend request"),
    (7.1, "libxl: debug: libxl_device.c:1093:device_hotplug: calling hotplug script: /etc/xen/scripts/vif-bridge online"),
    (8.0, "libxl: debug: libxl_device.c:1093:device_hotplug: calling hotplug script: /etc/xen/scripts/block add"),
    (9.5, "migration target: Transfer complete, requesting permission to start domain."),
    (9.9, "migration sender: Target has acknowledged transfer."),
    (10.2, "migration target: Got permission, starting domain."),
    (10.6, "migration target: Domain started successsfully."),
    (10.9, "migration sender: Target reports successful startup."),
]


def test_the_phases_come_from_xls_own_marks():
    result = profile([TimedLine(at, text) for at, text in LINES], total_s=11.2)
    assert result.missing == []
    assert result.phases == {"reach target": 0.9, "live memory rounds": 5.6,
                             "blackout: stream end, domain built, devices attached": 3.0,
                             "hand-over handshake": 0.7, "unpause on target": 0.4, "report back": 0.6}
    assert result.hotplug_lines == 2


def test_a_mark_this_xen_words_otherwise_leaves_its_phases_unmeasured():
    lines = [TimedLine(at, text) for at, text in LINES if "suspend" not in text]
    result = profile(lines, total_s=11.2)
    assert "suspended" in result.missing
    assert result.phases["live memory rounds"] is None and result.hotplug_lines == 0


def test_proc_stat_gives_busy_share_and_forks():
    before = parse_proc_stat("cpu  100 0 50 800 50 0 0 0 0 0\ncpu0 100 0 50 800 50 0 0 0 0 0\nprocesses 1000\n")
    after = parse_proc_stat("cpu  160 0 90 850 50 0 0 0 0 0\nprocesses 1042\n")
    assert before == CpuCounters(busy=150, idle=850, forks=1000)
    assert busy_share(before, after) == pytest.approx(100 / 150)
    assert after.forks - before.forks == 42
    with pytest.raises(ValueError):
        parse_proc_stat("intr 1 2 3\n")
