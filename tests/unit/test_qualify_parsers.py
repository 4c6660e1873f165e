"""Parsers of what the qualification checks run in dom0, on text captured from the lab's
hosts (tests/unit/captured_qualify/, see its README) and on the tools' failure modes."""

from __future__ import annotations

from pathlib import Path

import pytest

from xenlab.qualify.parsers import (
    XEN_SERIOUS,
    ParseError,
    filter_log,
    parse_fio,
    parse_iperf3,
    parse_ping,
    parse_traffic,
)
from xenlab.report.inventory import parse_iommu, parse_lsblk, parse_microcode, parse_nic_details

CAPTURED = Path(__file__).resolve().parent / "captured_qualify"


def captured(name: str) -> str:
    return (CAPTURED / name).read_text()


# -- iperf3 ----------------------------------------------------------------------------
def test_iperf3_json_from_the_lab():
    result = parse_iperf3(captured("iperf3-h1-self.json"))
    assert result.mbit_s > 0 and result.seconds > 0
    assert result.retransmits is not None and result.retransmits >= 0


def test_iperf3_refused_connection_is_an_error_with_iperf3s_words():
    with pytest.raises(ParseError, match="unable to connect"):
        parse_iperf3('{"start": {}, "intervals": [], "end": {}, '
                     '"error": "unable to connect to server: Connection refused"}')
    with pytest.raises(ParseError, match="no JSON"):
        parse_iperf3("iperf3: command not found")
    with pytest.raises(ParseError, match="bits_per_second"):
        parse_iperf3('{"end": {}}')


# -- fio -------------------------------------------------------------------------------
def test_fio_json_from_the_lab_sequential_and_random():
    sequential = parse_fio(captured("fio-read-local.json"))
    assert set(sequential) == {"read"} and sequential["read"].mib_s > 0
    random = parse_fio(captured("fio-randwrite-local.json"))
    assert set(random) == {"write"}
    assert random["write"].iops > 0 and random["write"].latency_ms > 0


def test_fio_failures_are_errors():
    with pytest.raises(ParseError, match="error 5"):
        parse_fio('{"jobs": [{"jobname": "seq_read", "error": 5, "read": {}, "write": {}}]}')
    with pytest.raises(ParseError, match="no I/O"):
        parse_fio('{"jobs": [{"jobname": "x", "error": 0, "read": {"io_bytes": 0}, "write": {"io_bytes": 0}}]}')
    with pytest.raises(ParseError, match="no jobs"):
        parse_fio('{"jobs": []}')


# -- ping ------------------------------------------------------------------------------
def test_ping_summary_from_the_lab():
    ping = parse_ping(captured("ping-h1-self.txt"))
    assert ping.sent == ping.received > 0 and ping.loss_pct == 0.0
    assert ping.avg_ms is not None and ping.max_ms is not None and ping.max_ms >= ping.avg_ms


def test_ping_with_every_reply_lost_has_no_round_trip():
    text = ("PING 10.99.0.9 (10.99.0.9) 56(84) bytes of data.\n\n--- 10.99.0.9 ping statistics ---\n"
            "5 packets transmitted, 0 received, 100% packet loss, time 4093ms\n")
    ping = parse_ping(text)
    assert (ping.sent, ping.received, ping.loss_pct, ping.avg_ms) == (5, 0, 100.0, None)
    with pytest.raises(ParseError):
        parse_ping("ping: unknown host")


# -- logs ------------------------------------------------------------------------------
def test_xen_log_keeps_only_serious_lines_and_the_allow_list_explains_them():
    text = captured("xl-dmesg-h1.txt")
    everything = filter_log(text.splitlines(), [], serious=XEN_SERIOUS)
    assert everything.unexpected, "the nested TCG lab's Xen log has warnings the default profile allows"
    assert not any("debug=" in line and "WARN" not in line.upper() for line in everything.unexpected)
    allowed = filter_log(text.splitlines(), [r".*"], serious=XEN_SERIOUS)
    assert not allowed.unexpected and allowed.allowed == {".*": len(everything.unexpected)}


def test_dom0_warnings_from_the_lab_and_the_default_allow_list():
    from xenlab.report.qualification import load_profile

    profile = load_profile(Path(__file__).resolve().parents[2] / "qualification/quick.yaml")
    allow = [a.pattern for a in profile.suite.stability.allow]
    for name, serious in (("dmesg-warn-h1.txt", None), ("xl-dmesg-h1.txt", XEN_SERIOUS)):
        verdict = filter_log(captured(name).splitlines(), allow, serious=serious)
        assert verdict.unexpected == [], f"{name}: the CI profile must explain what the lab shows"
    stray = filter_log(["[  12.3] EXT4-fs error (device vda): bad block"], allow)
    assert stray.unexpected, "a real disk error is never explained away"


def test_guest_traffic_lines_from_a_console_log():
    console = ("[    0.000000] Linux version 6.1.0\r\nxenlab-guest: qsink up, 10.9.0.101/24\r\n"
               "xenlab-traffic: received 12 bytes in 0.000 s from 10.9.0.102\r\n"
               "xenlab-traffic: received 62500000 bytes in 5.000 s from 10.9.0.102\r\n")
    stream = parse_traffic(console)
    assert (stream.bytes, stream.seconds, stream.peer) == (62500000, 5.0, "10.9.0.102")
    assert stream.mbit_s == 100.0  # the last stream counts; bytes * 8 / seconds
    assert parse_traffic("xenlab-traffic: sent 10 bytes in 1.000 s to 10.9.0.101", "sent").direction == "sent"
    with pytest.raises(ParseError, match="no sink at 10.9.0.101:5001"):
        parse_traffic("xenlab-traffic: no sink at 10.9.0.101:5001 after 600 s\n")
    with pytest.raises(ParseError, match="no 'xenlab-traffic: received' line"):
        parse_traffic("xenlab-traffic: sent 10 bytes in 1.000 s to 10.9.0.101")
    assert parse_traffic("xenlab-traffic: received 0 bytes in 0.000 s from 1.2.3.4").mbit_s == 0.0


# -- inventory -------------------------------------------------------------------------
def test_nic_details_from_the_lab():
    nics = parse_nic_details(captured("nics-h1.txt"))
    assert nics and all(n.startswith("eth") for n in nics)
    assert "driver virtio_net" in nics[0] and "link up" in nics[0] and "mtu 1500" in nics[0]


def test_nic_details_of_a_real_nic_with_firmware_and_speed():
    text = ("== eno1\ndriver: igb\nversion: 6.1.0-28-amd64\nfirmware-version: 3.25, 0x800005cc\n"
            "bus-info: 0000:02:00.0\nspeed: 1000\ncarrier: 1\nmtu: 9000\n== eno2\ndriver: igb\nspeed: -1\n"
            "carrier: 0\nmtu: 1500\n")
    assert parse_nic_details(text) == [
        "eno1: driver igb 6.1.0-28-amd64, firmware 3.25, 0x800005cc, bus 0000:02:00.0, link up 1000 Mb/s, mtu 9000",
        "eno2: driver igb, firmware none, link down, mtu 1500"]


def test_microcode_iommu_and_disk_bus():
    assert parse_microcode(captured("cpuinfo-h1.txt")) == "0x1000065"  # what QEMU's qemu64 CPU reports
    assert parse_microcode("processor : 0\nmicrocode : 0xde\n") == "0xde"
    assert parse_iommu(captured("xl-dmesg-h1.txt"), ["pv", "hvm", "shadow"]) == "disabled"
    assert parse_iommu("(XEN) I/O virtualisation enabled\n", []) == "enabled"
    assert parse_iommu("", ["pv", "hvm", "hvm_directio"]) == "enabled"
    text = '{"blockdevices":[{"name":"nvme0n1","size":512110190592,"type":"disk","model":"Samsung SSD","rota":false,' \
           '"tran":"nvme"}]}'
    assert parse_lsblk(text) == ["nvme0n1 476.9 GiB Samsung SSD bus nvme"]
