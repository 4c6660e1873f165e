"""The last end-to-end test of a session (conftest moves it last): down leaves nothing."""

import subprocess

import pytest

from xenlab.lab.processes import ours, owned_pids, recorded

pytestmark = [pytest.mark.e2e, pytest.mark.lab_teardown]


def test_down_leaves_nothing_running(pool2):
    marker = pool2.run.marker
    # 3 QEMU, per network a core switch, per machine an access switch and a wirefilter, and per
    # host with `bmc: ipmi` its virtual BMC
    bmcs = sum(1 for host in pool2.hosts if pool2.spec.bmc_of(host.name))
    assert bmcs == 2  # xen-pool2's hosts have BMCs: the pool's cluster fences through them
    assert len(owned_pids(pool2.run.root)) == 3 + 1 + 3 * 2 + bmcs
    started = [(pid, start) for pid, start, _ in recorded(pool2.run.root)]
    pool2.down()
    assert [pid for pid, start in started if ours(pid, start)] == []  # its records went with the run directory
    leftovers = subprocess.run(["pgrep", "-af", "qemu-system|vde_switch|wirefilter"], capture_output=True,
                               text=True, check=False).stdout
    assert marker not in leftovers
    assert not pool2.run.root.exists()
