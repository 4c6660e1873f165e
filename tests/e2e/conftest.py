"""One real lab (labs/xen-pool2.yaml under TCG) shared by every end-to-end test of the session.

The lab is tied to this pytest process: if the session dies, even by SIGKILL, its QEMU
and vde_switch processes die with it. Its run directory is private to the session.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

from xenlab.lab import Lab
from xenlab.lab.contract import restore_ready, save_ready
from xenlab.lab.lab import REQUIRED_TOOLS
from xenlab.lab.labs import sweep_abandoned_run_bases
from xenlab.lab.rundir import claim_run_base, release_run_base
from xenlab.spec import load_lab

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def run_base(tmp_path_factory) -> Path:
    """The session's private run base, claimed by this process: a later session (or `xenlab
    down --all`) stops whatever a killed one left in it, such as the machines a CLI command
    run by a test had restored untied."""
    left = sweep_abandoned_run_bases()
    if any(left.values()):
        print(f"\nstopped processes left by dead test sessions: {left}")
    base = tmp_path_factory.mktemp("xenlab-run")
    claim_run_base(base)
    os.environ["XENLAB_RUN_DIR"] = str(base)
    yield base
    release_run_base(base)


@pytest.fixture(scope="session")
def pool2(run_base) -> Lab:
    # the lab's own tools; the images are built by whichever road this user has (root: mmdebstrap as
    # root; anyone else: mmdebstrap in a user namespace), which says what it lacks
    missing = [f"{tool} ({package})" for tool, package in REQUIRED_TOOLS.items() if not shutil.which(tool)]
    if missing:
        pytest.fail(f"end-to-end tests need {', '.join(missing)}: run ./setup.sh")
    lab = Lab(load_lab(REPO / "labs/xen-pool2.yaml"), str(REPO / "labs/xen-pool2.yaml"))
    started = time.monotonic()
    lines: list[str] = []
    def progress(subject: str, message: str) -> None:
        lines.append(f"{time.monotonic() - started:6.1f}s {subject}: {message}")

    try:
        lab.up(progress=progress, accel="tcg", tied=True, timeout=900)
        save_ready(lab, progress)
    finally:
        print("\n".join(["", "bring-up of xen-pool2:", *lines]))
    yield lab
    lab.down()


@pytest.fixture(scope="module", autouse=True)
def from_ready(pool2):
    """Every module starts from the lab's `ready` checkpoint, whatever ran before it: a
    scenario run through the CLI leaves its pool and guests behind, and a module's tests
    build on a lab that has neither."""
    restore_ready(pool2, lambda subject, message: None)


def pytest_collection_modifyitems(config, items):
    """The warm-lab tests run first (every later test then runs on the restored lab);
    tests that tear the shared lab down run after every other test of the session;
    nightly tests are skipped, with their reason, unless XENLAB_NIGHTLY=1."""
    items.sort(key=lambda item: (item.get_closest_marker("warm_first") is None,
                                 item.get_closest_marker("lab_teardown") is not None))
    if os.environ.get("XENLAB_NIGHTLY") == "1":
        return
    for item in items:
        nightly = item.get_closest_marker("nightly")
        if nightly is not None:
            reason = nightly.kwargs.get("reason", "too slow for every CI run")
            item.add_marker(pytest.mark.skip(reason=f"nightly (XENLAB_NIGHTLY=1 runs it): {reason}"))
