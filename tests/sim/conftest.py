"""Fixtures: an in-process simulator reached only through the real XenAPI client."""

from __future__ import annotations

import pytest
from sim_helpers import HOST_MEM, PW, connect

from xenlab.sim.server import SimServer


@pytest.fixture
def sim():
    with SimServer(3, password=PW, host_memory=HOST_MEM) as s:
        yield s


@pytest.fixture
def pool(sim):
    """Three hosts joined into h1's pool; yields (sim, api proxy on master)."""
    for i in (1, 2):
        connect(sim, i).xenapi.pool.join("10.0.0.1", "root", PW)
    yield sim, connect(sim, 0).xenapi
