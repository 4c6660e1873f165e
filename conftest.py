"""The repository's own pytest setup: what `pytest` from a checkout of xenlab expects.

- xenlab's plugin (`xenlab.pytest_plugin`: the `--lab`/`--keep-lab`/`--reuse-lab`/`--accel`/
  `--xenlab-report` options, the `lab`, `hosts`, `vm_factory`, `fault`, `metrics`...
  fixtures, and scenario files as test items) is registered by installing xenlab
  (`./setup.sh`). A checkout used without installing (`PYTHONPATH=.`) gets it from here.
- Lab names resolve against this repository's `labs/` (the plugin looks under the
  invocation directory and the rootdir, which is this directory), so
  `pytest scenarios/host-failover.yaml --lab xapi-sim-pool3` works from anywhere below.
- The fixtures of `fixtures/conftest_example.py` are shared here, so the examples in
  `fixtures/` run in place: `pytest fixtures/test_pool_example.py` (boots xen-pool2).

`pytest` alone runs `tests/` (testpaths in pyproject.toml); scenario files run when named,
or with `pytest scenarios/`.
"""

from __future__ import annotations

from importlib.metadata import entry_points
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent

if not any(e.value == "xenlab.pytest_plugin" for e in entry_points(group="pytest11")):
    pytest_plugins = ["xenlab.pytest_plugin"]


@pytest.fixture(scope="session")
def repo() -> Path:
    """This checkout: its `labs/`, `scenarios/`, `qualification/` and `images/`."""
    return REPO


@pytest.fixture(scope="session")
def pool_hosts(hostA1, hostA2):
    """The two hosts of pool A; tests using it skip on a lab with fewer than two Xen hosts."""
    return [hostA1, hostA2]


@pytest.fixture
def xl_info(hostA1) -> dict[str, str]:
    """`xl info` of the first host as a dict (asked again for every test)."""
    pairs = (line.partition(":") for line in hostA1.succeed("xl info").splitlines())
    return {key.strip(): value.strip() for key, _, value in pairs}
