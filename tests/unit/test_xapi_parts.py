"""Pure parts of the XAPI driver and of sim labs: error mapping, xapi values, the guest model, lab files."""

from __future__ import annotations

import itertools
import xmlrpc.client
from pathlib import Path

import pytest

from xenlab.errors import SpecError
from xenlab.metrics import downtime_around, recovery_time
from xenlab.sim.guests import INTERVAL_S, GuestHeartbeats
from xenlab.spec import load_lab, parse_lab
from xenlab.toolstack.base import GuestSpec
from xenlab.toolstack.xapi import refusal, task_value, vm_record, vm_state, xapi_time

REPO = Path(__file__).resolve().parents[2]


# -- the driver's pure parts ------------------------------------------------------------
def test_join_refusals_for_a_misfit_become_reasons_others_do_not():
    assert refusal(["POOL_HOSTS_NOT_HOMOGENEOUS", "CPU vendor differ"]) == \
        "hosts are not homogeneous: CPU vendor differ (xapi POOL_HOSTS_NOT_HOMOGENEOUS)"
    assert refusal(["POOL_JOINING_HOST_MUST_HAVE_SAME_PRODUCT_VERSION"]) == \
        "product version differs from the master's (xapi POOL_JOINING_HOST_MUST_HAVE_SAME_PRODUCT_VERSION)"
    assert "runs guests of its own" in refusal(["JOINING_HOST_CANNOT_HAVE_RUNNING_VMS"])
    assert refusal(["JOINING_HOST_CONNECTION_FAILED"]) is None  # the network, not the host
    assert refusal(["SESSION_AUTHENTICATION_FAILED", "root", "Authentication failure"]) is None
    assert refusal([]) is None


def test_xapi_times_are_utc():
    assert xapi_time(xmlrpc.client.DateTime("20261125T08:00:30Z")) == 1795593630.0
    assert xapi_time("20261125T08:00:30") == 1795593630.0
    with pytest.raises(Exception, match="cannot read xapi time"):
        xapi_time("yesterday")


def test_task_results_are_decoded_from_their_xmlrpc_encoding():
    assert task_value("<value>OpaqueRef:1234</value>") == "OpaqueRef:1234"
    assert task_value("<value><array><data><value>a</value><value>b</value></data></array></value>") == ["a", "b"]
    assert task_value("") is None


@pytest.mark.parametrize("power,live,state", [("Running", True, "running"), ("Paused", True, "paused"),
                                              ("Halted", True, "halted"), ("Suspended", True, "halted"),
                                              ("Running", False, "unknown"), ("Halted", False, "halted")])
def test_power_states_as_the_scenarios_see_them(power, live, state):
    assert vm_state(power, live) == state


def test_a_vm_record_has_every_constructor_field_of_the_datamodel():
    from xenlab.sim import datamodel

    record = vm_record(GuestSpec("vm1", memory_mib=256, vcpus=2, heartbeat=False))
    required = [f.name for f in datamodel.get().cls("VM").fields.values() if f.in_constructor and not f.has_default]
    assert required and not [f for f in required if f not in record]
    assert record["memory_static_max"] == str(256 * 1024 * 1024) and record["VCPUs_max"] == "2"
    assert record["other_config"]["xenlab_heartbeat"] == "false"


# -- the simulated guests' heartbeats ------------------------------------------------------
def test_a_guest_sends_every_10ms_from_its_boot_delay_on():
    guests = GuestHeartbeats(boot_s=0.5, switchover_s=0.2)
    guests.booted("vm", 100.0)
    assert guests.series("vm", now=100.49) == []
    beats = guests.series("vm", now=101.0)
    assert beats[0] == (0, 100.5) and len(beats) == 51 and beats[-1] == (50, 101.0)
    assert all(b - a == pytest.approx(INTERVAL_S) for (_, a), (_, b) in itertools.pairwise(beats))
    assert guests.series("vm", now=101.0, since=100.9)[0] == (40, 100.9)


def test_a_migrated_guest_is_silent_for_the_switch_over_and_loses_nothing():
    guests = GuestHeartbeats(boot_s=0.0, switchover_s=0.2)
    guests.booted("vm", 0.0)
    guests.migrated("vm", 1.0)
    series = guests.series("vm", now=2.0)
    stats = downtime_around(series, 1.0, 1.05)
    assert stats.downtime_s == pytest.approx(0.2 + INTERVAL_S, abs=1e-6) and stats.heartbeats_lost == 0
    assert [s for s, _ in series] == list(range(len(series)))  # a paused counter does not move


def test_a_cut_off_guest_keeps_counting_but_is_not_heard():
    guests = GuestHeartbeats(boot_s=0.0)
    guests.booted("vm", 0.0)
    guests.cut_off("vm", 1.0)
    guests.reconnected("vm", 2.0)
    stats = downtime_around(guests.series("vm", now=3.0), 1.0, 2.0)
    assert stats.downtime_s == pytest.approx(1.01, abs=1e-6) and stats.heartbeats_lost == 100


def test_a_guest_that_died_and_restarted_is_a_new_run():
    guests = GuestHeartbeats(boot_s=0.5)
    guests.booted("vm", 0.0)
    guests.stopped("vm", 10.0)
    guests.booted("vm", 40.0)
    series = guests.series("vm", now=41.0)
    recovery = recovery_time(series, fault_at=10.0, until=41.0)
    assert recovery.restarted and recovery.seconds == pytest.approx(30.5)
    assert guests.series("vm", now=41.0, since=39.0)[0] == (0, 40.5)


def test_a_paused_guest_is_silent_until_it_resumes():
    guests = GuestHeartbeats(boot_s=0.0)
    guests.booted("vm", 0.0)
    guests.paused("vm", 1.0)
    assert guests.series("vm", now=5.0)[-1][1] < 1.0
    guests.resumed("vm", 5.0)
    assert guests.series("vm", now=6.0)[-1] == (200, 6.0)
    with pytest.raises(ValueError):
        GuestHeartbeats(boot_s=-1)


# -- sim lab files -------------------------------------------------------------------------
def test_the_shipped_sim_lab_is_valid():
    spec = load_lab(REPO / "labs/xapi-sim-pool3.yaml")
    assert (spec.backend, list(spec.hosts)) == ("sim", ["h1", "h2", "h3"])
    assert spec.sim.time_scale == 0.05 and spec.sim.switchover_pause_s == 0.2


def test_labs_are_qemu_labs_unless_they_say_sim():
    assert parse_lab("name: a\nhosts:\n  h1:\n").backend == "qemu"
    assert parse_lab("name: a\nbackend: sim\nhosts:\n  h1:\n").sim is None


@pytest.mark.parametrize("text,line,message", [
    ("name: a\nsim: {time_scale: 0.1}\nhosts:\n  h1:\n", 2, "a sim section needs `backend: sim`"),
    ("name: a\nbackend: sim\nhosts:\n  h1:\n  h2: {memory_mib: 4096}\n", 3,
     "the hosts of a sim lab all have the same memory_mib and dom0_memory_mib"),
    ("name: a\nbackend: xen\nhosts:\n  h1:\n", 2, "backend: 'xen' is not allowed here: write 'qemu', 'sim' or 'static'"),
    ("name: a\nbackend: sim\nsim: {time_scale: 0}\nhosts:\n  h1:\n", 3,
     "sim.time_scale: Input should be greater than 0"),
])
def test_sim_lab_mistakes_are_refused_with_lines(text, line, message):
    with pytest.raises(SpecError) as info:
        parse_lab(text, "lab.yaml")
    assert info.value.problems == [(line, message)]
