"""End to end on xen-pool2 (`bmc: ipmi`): the BMC network. A dom0 reaches its peer's virtual
BMC with fence_ipmilan through the lab's tunnel and nothing else of this machine through it."""

from __future__ import annotations

import pytest

from xenlab.lab.bmc import credentials_path, read_credentials
from xenlab.toolstack.cluster import SECRETS_DIR, bmc_password_file, bmc_password_script
from xenlab.toolstack.cluster_pool import start_dom0_relays

pytestmark = pytest.mark.e2e


def test_fence_ipmilan_in_h2_reads_h1s_power_through_h1s_own_bmc(pool2):
    h1, h2 = pool2.hosts
    start_dom0_relays(pool2, [h1.name, h2.name])
    route = pool2.bmc_routes()[h1.name]
    password = read_credentials(credentials_path(pool2.run.root)).password
    h2.succeed(f"mkdir -p {SECRETS_DIR} && chmod 700 {SECRETS_DIR}")  # forming a cluster makes it; no cluster here
    h2.write_file(bmc_password_file(h1.name), password + "\n", 0o600)
    h2.write_file(bmc_password_script(h1.name), f"#!/bin/sh\nexec cat {bmc_password_file(h1.name)}\n", 0o700)
    status = h2.run(f"fence_ipmilan --ip={route.dom0_address} --username=xenlab --lanplus "
                    f"--password-script={bmc_password_script(h1.name)} -o status", timeout=120)
    assert status.ok and "Status: ON" in status.stdout, status
    # the tunnel is IPMI to the BMC only: the same address on another port reaches nothing
    assert not h2.run(f"nc -z -w 3 {route.guestfwd_address} 22", timeout=20).ok
    assert not h2.run("nc -z -w 3 10.0.2.2 22", timeout=20).ok
