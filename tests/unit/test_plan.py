"""The MAC/IP/identity plan: deterministic, unique inside a lab and between labs."""

import ipaddress

from xenlab.plan import MGMT, lab_number, mac_address, machine_id, plan_lab
from xenlab.spec import parse_lab

POOL3 = "name: {name}\nnetworks:\n  lab:\n  storage:\nhosts:\n  h1: {{nics: [lab, storage]}}\n  h2:\n  h3:\n"


def plan(name="alpha"):
    return plan_lab(parse_lab(POOL3.format(name=name)))


def test_plan_is_deterministic():
    assert plan() == plan()


def test_addresses_macs_and_ids_are_unique_within_a_lab():
    p = plan()
    macs = [m.mgmt_mac for m in p.machines] + [n.mac for m in p.machines for n in m.nics]
    assert len(macs) == len(set(macs))
    ips = [n.address.ip for m in p.machines for n in m.nics]
    assert len(ips) == len(set(ips))
    assert len({m.machine_id for m in p.machines}) == len(p.machines)


def test_addresses_fall_inside_their_network():
    p = plan()
    subnets = {n.name: n.subnet for n in p.networks}
    for m in p.machines:
        for nic in m.nics:
            assert nic.address.ip in subnets[nic.network]
            assert nic.address.network == subnets[nic.network]


def test_layout_of_the_default_plan():
    p = plan()
    h1 = p.machine("h1")
    assert [n.device for n in h1.nics] == ["eth1", "eth2"]
    assert str(h1.address_on("lab")).endswith(".11")
    assert str(p.machine("h3").address_on("lab")).endswith(".13")
    assert str(p.services.address_on("lab")).endswith(".2")
    assert h1.bridge == "xenbr0" and p.services.bridge is None
    assert [h.name for h in p.hosts] == ["h1", "h2", "h3"]


def test_two_labs_do_not_collide():
    a, b = plan("alpha"), plan("beta")
    assert a.number != b.number
    assert not ({n.subnet for n in a.networks} & {n.subnet for n in b.networks})
    macs_a = {n.mac for m in a.machines for n in m.nics} | {m.mgmt_mac for m in a.machines}
    macs_b = {n.mac for m in b.machines for n in m.nics} | {m.mgmt_mac for m in b.machines}
    assert not (macs_a & macs_b)
    assert not ({m.machine_id for m in a.machines} & {m.machine_id for m in b.machines})


def test_macs_are_locally_administered_unicast():
    for mac in (mac_address("x", 0, 0), mac_address("x", MGMT, 7), mac_address("x", 7, 255)):
        first = int(mac.split(":")[0], 16)
        assert first & 0b10 and not first & 0b01


def test_default_subnets_are_private_24s_per_network():
    p = plan()
    assert [n.subnet.prefixlen for n in p.networks] == [24, 24]
    assert all(n.subnet.subnet_of(ipaddress.IPv4Network("10.0.0.0/8")) for n in p.networks)
    assert p.networks[0].subnet != p.networks[1].subnet


def test_lab_number_is_12_bits_and_spreads():
    numbers = {lab_number(f"lab{i}") for i in range(200)}
    assert all(0 <= n < 4096 for n in numbers)
    assert len(numbers) > 190


def test_machine_id_is_32_hex():
    mid = machine_id("alpha", "h1")
    assert len(mid) == 32 and int(mid, 16) >= 0
    assert mid != machine_id("alpha", "h2") != machine_id("beta", "h1")
