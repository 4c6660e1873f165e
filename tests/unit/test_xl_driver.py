"""Pure parts of the xl driver: parsing xl output, homogeneity, guest config and addressing."""

from xenlab.toolstack.base import GuestSpec, HostFacts
from xenlab.toolstack.xl import check_homogeneous, guest_config, guest_mac, parse_xl_info, parse_xl_list, vm_state

XL_LIST = """Name                                        ID   Mem VCPUs\tState\tTime(s)
Domain-0                                     0  1024     1     r-----      88.8
g1                                           4   128     1     -b----       0.1
g2--incoming                                 5   256     1     --p---       0.0
"""

XL_INFO = """host                   : h1
release                : 6.1.0-50-amd64
xen_major              : 4
xen_minor              : 17
xen_extra              : .5
hw_caps                : 078bfbff:80282203:2c100800:00000061:00000000:00000000:00000000:00000000
virt_caps              : pv hvm shadow
total_memory           : 2047
free_memory            : 967
xen_commandline        : console=com1 com1=115200,8n1 dom0_mem=1024M,max:1024M
"""


def facts(**changes) -> HostFacts:
    base = {"name": "h1", "address": "10.0.0.11", "xen_version": "4.17.5", "cpu_features": "078bfbff:80282203",
            "memory_total_mib": 2047, "memory_free_mib": 967, "bridges": ("xenbr0",)}
    base.update(changes)
    return HostFacts(**base)


def test_parse_xl_info_keeps_values_with_colons():
    info = parse_xl_info(XL_INFO)
    assert info["host"] == "h1" and info["xen_extra"] == ".5"
    assert info["xen_commandline"] == "console=com1 com1=115200,8n1 dom0_mem=1024M,max:1024M"
    assert info["hw_caps"].count(":") == 7


def test_parse_xl_list_skips_dom0():
    assert parse_xl_list(XL_LIST) == [("g1", 4, 128, "-b----"), ("g2--incoming", 5, 256, "--p---")]
    assert parse_xl_list("Name ID Mem VCPUs State Time(s)\n") == []


def test_vm_states():
    assert vm_state("-b----") == "running" and vm_state("r-----") == "running"
    assert vm_state("--p---") == "paused"
    assert vm_state("---s--") == "halted" and vm_state("----c-") == "halted"


def test_identical_hosts_fit():
    assert check_homogeneous(facts(), facts(name="h2", memory_free_mib=500)) == []


def test_each_misfit_is_named():
    problems = check_homogeneous(facts(), facts(xen_version="5.0.1"))
    assert problems == ["Xen 5.0.1 differs from the master's 4.17.5"]
    assert check_homogeneous(facts(), facts(xen_version="4.20.1")) == []  # a rolling upgrade: allowed, noted
    [cpu] = check_homogeneous(facts(), facts(cpu_features="078bfbff:00000000"))
    assert "CPU features" in cpu and "unsafe" in cpu
    [memory] = check_homogeneous(facts(), facts(memory_total_mib=1024))
    assert "memory 1024 MiB" in memory
    [bridge] = check_homogeneous(facts(), facts(bridges=("xenbr9",)))
    assert bridge == "no guest bridge xenbr0 (bridges: xenbr9)"
    assert len(check_homogeneous(facts(), facts(xen_version="unknown", bridges=()))) == 2


def test_a_mixed_pool_says_which_way_guests_may_move():
    from xenlab.toolstack.versions import version_notes

    assert version_notes({"h1": "4.17.5", "h2": "4.17.5"}) == []
    [note] = version_notes({"h2": "4.20.1", "h1": "4.17.5"})
    assert note.startswith("mixed Xen versions (h1 Xen 4.17.5, h2 Xen 4.20.1)") and "older to a newer" in note


def test_memory_within_a_quarter_fits():
    assert check_homogeneous(facts(), facts(memory_total_mib=2400)) == []
    assert check_homogeneous(facts(), facts(memory_total_mib=2600)) != []


def test_guest_macs_are_xen_oui_and_unique():
    macs = {guest_mac(lab, index) for lab in (0, 1, 4095) for index in range(50)}
    assert len(macs) == 150
    assert all(m.startswith("00:16:3e:") for m in macs)
    assert guest_mac(0xABC, 0x123) == "00:16:3e:ab:c1:23"


def test_guest_config_points_everything_at_the_shared_sr():
    config = guest_config(GuestSpec("vm1", memory_mib=256), sr="/srv/xenlab", address="10.1.2.101/24",
                          mac="00:16:3e:00:00:01", heartbeat_to="10.1.2.2:9999", heartbeat_key="k" * 64)
    assert 'name = "vm1"' in config and "memory = 256" in config
    assert 'kernel = "/srv/xenlab/images/pv-guest/vmlinuz"' in config
    assert "target=/srv/xenlab/guests/vm1/disk.img" in config and "script=block" in config
    assert 'vif = ["bridge=xenbr0,mac=00:16:3e:00:00:01"]' in config
    assert "xenlab.ip=10.1.2.101/24" in config and "xenlab.hb=10.1.2.2:9999" in config
    assert f"xenlab.hbkey={'k' * 64}" in config  # the guest's heartbeats carry the lab's MAC
    assert "xenlab.writer=1" in config
    quiet = guest_config(GuestSpec("vm2", heartbeat=False, writer=False), sr="/s", address="a", mac="m",
                         heartbeat_to="x:1")
    assert "xenlab.hb" not in quiet and "xenlab.writer" not in quiet
    keyless = guest_config(GuestSpec("vm3"), sr="/s", address="a", mac="m", heartbeat_to="x:1")
    assert "xenlab.hb" not in keyless  # no key, no heartbeats: the collector would drop them


def test_guest_config_starts_the_traffic_agent_as_sink_or_sender():
    sink = guest_config(GuestSpec("qsink", writer=False, traffic_sink=True), sr="/s", address="10.1.2.101/24",
                        mac="m", heartbeat_to=None)
    assert "xenlab.sink=5001" in sink and "xenlab.send" not in sink
    sender = guest_config(GuestSpec("qsend", traffic_to="qsink", traffic_seconds=7), sr="/s", address="10.1.2.102/24",
                          mac="m", heartbeat_to=None, traffic_to="10.1.2.101")
    assert "xenlab.send=10.1.2.101:5001:7" in sender and "xenlab.sink" not in sender
    plain = guest_config(GuestSpec("vm"), sr="/s", address="a", mac="m", heartbeat_to=None)
    assert "xenlab.sink" not in plain and "xenlab.send" not in plain


def test_guest_traffic_settings_are_checked():
    import pytest

    from xenlab.errors import XenlabError

    with pytest.raises(XenlabError, match="to itself"):
        GuestSpec("g", traffic_to="g")
    with pytest.raises(XenlabError, match="not within 1-600"):
        GuestSpec("g", traffic_to="h", traffic_seconds=0)
    assert GuestSpec("g", traffic_sink=True).sends_traffic and not GuestSpec("g").sends_traffic
