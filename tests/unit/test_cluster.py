"""The xl pool's cluster stack: its configuration from the pool's settings, and the stack's
own records read back (samples captured from a real xen-pool2 run under tests/unit/data/cluster/)."""

import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from xenlab.toolstack.cluster import (
    ClusterPlan,
    FenceTarget,
    cib_config,
    corosync_conf,
    failover_record,
    guest_resource,
    parse_crm_mon,
    parse_fence_history,
    parse_journal,
    parse_quorumtool,
    token_ms,
)

DATA = Path(__file__).parent / "data" / "cluster"


def plan(members=(("h1", "10.0.0.1"), ("h2", "10.0.0.2"))) -> ClusterPlan:
    return ClusterPlan("pool", tuple(members), token_ms(30),
                       tuple(FenceTarget(n, f"127.0.1.{i + 1}", 623, "xenlab") for i, (n, _) in enumerate(members)),
                       "10.0.0.254")


def test_detection_timeout_is_token_plus_consensus():
    assert token_ms(30) == 13636
    assert plan().consensus_ms == int(13636 * 1.2)
    assert token_ms(1) == 3000  # never under corosync's own default


def test_two_members_get_two_node_quorum_and_three_a_majority():
    two = corosync_conf(plan())
    assert "two_node: 1" in two and "token: 13636" in two and "consensus: 16363" in two
    assert "ring0_addr: 10.0.0.2\n        name: h2\n        nodeid: 2" in two
    three = corosync_conf(plan((("h1", "a"), ("h2", "b"), ("h3", "c"))))
    assert "two_node" not in three and "corosync_votequorum" in three


def test_fencing_never_names_a_password_and_a_device_never_fences_its_own_host():
    text = cib_config(plan())
    config = ET.fromstring(text)
    assert config.tag == "configuration" and "password\"" not in text and "bmc-password-h1\"" not in text

    def param(rid: str, name: str) -> str:
        (pair,) = config.findall(f"resources/primitive[@id='{rid}']/instance_attributes/nvpair[@name='{name}']")
        return pair.get("value")

    assert param("fence-h1", "password_script") == "/etc/xenlab/bmc-password-h1.sh"
    assert not config.findall(".//nvpair[@name='password']")
    assert param("fence-h1", "pcmk_host_list") == "h1" and param("fence-ping", "ping_targets") == "10.0.0.254"
    (away,) = config.findall("constraints/rsc_location[@id='fence-h1-elsewhere']")
    assert away.attrib == {"id": "fence-h1-elsewhere", "rsc": "fence-h1", "score": "-INFINITY", "node": "h1"}
    levels = {lvl.get("target"): lvl.get("devices") for lvl in config.findall("fencing-topology/fencing-level")}
    assert levels == {"h1": "fence-ping,fence-h1", "h2": "fence-ping,fence-h2"}
    options = {p.get("name"): p.get("value") for p in config.findall("crm_config/cluster_property_set/nvpair")}
    assert options["stonith-action"] == "off" and options["stonith-enabled"] == "true"


def test_every_cib_id_is_unique_and_a_valid_xml_id():
    config = ET.fromstring(cib_config(plan((("h1", "a"), ("h2", "b"), ("h3", "c")))))
    ids = [e.get("id") for e in config.iter() if e.get("id") is not None]
    assert len(ids) == len(set(ids))
    assert all(re.fullmatch(r"[A-Za-z_][\w.-]*", i) for i in ids), ids


def test_a_protected_guest_is_a_migrating_xen_resource_first_placed_on_its_host():
    config = ET.fromstring(guest_resource("vm1", "/srv/sr/guests/vm1/vm1.cfg", 2, "h1"))
    (primitive,) = config.findall("resources/primitive")
    assert (primitive.get("class"), primitive.get("provider"), primitive.get("type")) == ("ocf", "heartbeat", "Xen")
    params = {p.get("name"): p.get("value") for p in primitive.findall("instance_attributes/nvpair")}
    assert params == {"xmfile": "/srv/sr/guests/vm1/vm1.cfg", "name": "vm1"}
    meta = {p.get("name"): p.get("value") for p in primitive.findall("meta_attributes/nvpair")}
    assert meta == {"allow-migrate": "true", "priority": "2"}
    ops = {(o.get("name"), o.get("interval")): o.get("timeout") for o in primitive.findall("operations/op")}
    assert ops[("migrate_to", "0")] == "900s" and ops[("monitor", "10s")] == "120s"
    (placed,) = config.findall("constraints/rsc_location")
    assert placed.attrib == {"id": "vm1-placed", "rsc": "vm1", "score": "INFINITY", "node": "h1"}


def test_markup_in_a_path_stays_an_attribute_value():
    config = ET.fromstring(guest_resource("vm1", '/srv/a"b<c>&d/vm1.cfg', 1, "h1"))
    (xmfile,) = config.findall("resources/primitive/instance_attributes/nvpair[@name='xmfile']")
    assert xmfile.get("value") == '/srv/a"b<c>&d/vm1.cfg'


def sample(name: str) -> str:
    path = DATA / name
    if not path.exists():
        pytest.fail(f"{path} missing: captured from a real lab run (see the module docstring)")
    return path.read_text()


def test_quorumtool_of_a_formed_two_node_pool():
    quorum = parse_quorumtool(sample("quorumtool-2node.txt"))
    assert quorum.quorate and quorum.total_votes == 2 and quorum.expected_votes == 2
    assert quorum.members == ("h1", "h2")
    assert "2Node" in quorum.flags and "WaitForAll" in quorum.flags


def test_crm_mon_of_a_formed_pool_lists_both_members_online_with_quorum():
    state = parse_crm_mon(sample("crm_mon-formed.xml"))
    assert sorted(state.online) == ["h1", "h2"] and not state.offline
    assert state.with_quorum and state.dc in ("h1", "h2")


def test_a_failed_fencing_is_never_taken_for_a_fenced_host():
    lines = parse_journal(sample("journal-h2-fence-failed.txt"))
    record = failover_record(lines, "h1", 1, ["vm1"], since=0)
    assert record.membership_changed_at == pytest.approx(1796651564.489, abs=0.01)
    assert record.fence_requested_at == pytest.approx(1796651568.567, abs=0.01)
    assert record.fence_done_at is None and record.fence_failures >= 1 and record.fenced_by == ""
    assert "vm1" not in record.started


def test_an_empty_fence_history_has_no_events():
    assert parse_fence_history(sample("fence-history-failed.xml")) == []


def test_a_power_cut_read_back_from_the_survivors_journal():
    """h1's plug pulled at 1796652301.586 (the controller's clock; h2's was 0.4 s behind)."""
    lines = parse_journal(sample("journal-h2-power-cut.txt"))
    record = failover_record(lines, "h1", 1, ["vm1"], since=1796652290)
    assert record.membership_changed_at == pytest.approx(1796652330.349, abs=0.01)
    assert record.fence_requested_at == pytest.approx(1796652334.740, abs=0.01)
    assert record.fence_done_at == pytest.approx(1796652352.030, abs=0.01)
    assert record.fenced_by == "h2" and record.fence_failures == 0 and "off by h2: OK" in record.fence_result
    assert record.started["vm1"] == pytest.approx(1796652423.602, abs=0.01)
    assert len(record.lines) == 4


def test_a_membership_change_about_another_member_is_not_taken():
    lines = parse_journal(sample("journal-h2-power-cut.txt"))
    record = failover_record(lines, "h3", 3, ["vm9"], since=0)
    assert record.membership_changed_at is None and record.fence_requested_at is None and not record.started


def test_the_fence_history_names_the_winner_and_when():
    (event,) = parse_fence_history(sample("fence-history-h1-off.xml"))
    assert (event.target, event.action, event.delegate, event.origin, event.status) == ("h1", "off", "h2", "h2",
                                                                                        "success")
    assert event.completed == pytest.approx(1796652351.0, abs=1.0)


def test_crm_mon_after_the_failover_runs_vm1_on_the_survivor():
    state = parse_crm_mon(sample("crm_mon-after-failover.xml"))
    assert state.resources["vm1"] == ("h2",)
    assert "h2" in state.online


def test_dom0_ssh_to_the_members_uses_the_pools_key_and_pinned_host_keys():
    from xenlab.toolstack.cluster_pool import _cluster_name, ssh_config
    from xenlab.toolstack.xl import POOL_KEY, POOL_KNOWN_HOSTS

    text = ssh_config({"h1": "10.0.0.1", "h2": "10.0.0.2"})
    assert "Host h1 h2 10.0.0.1 10.0.0.2\n" in text
    assert f"IdentityFile {POOL_KEY}" in text and f"UserKnownHostsFile {POOL_KNOWN_HOSTS}" in text
    assert "StrictHostKeyChecking yes" in text
    assert _cluster_name("pool a/b") == "pool-a-b" and len(_cluster_name("x" * 80)) == 32
