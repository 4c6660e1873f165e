"""Nightly: a real Xen build, end to end. Xen's hypervisor is built from Debian's source package
of Xen (`apt-get source`, through a private deb-src list) with a visible change, its vendor
version, booted through `xen.hypervisor` on a two-host pool; every host must report the change,
and the live migration scenario runs on it. Its own lab: this module overrides `from_ready`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from xenlab.lab import Lab
from xenlab.results import RunResults
from xenlab.spec import load_lab

pytestmark = [pytest.mark.e2e, pytest.mark.nightly(reason="builds Xen's hypervisor from source (2-3 minutes "
                                                          "on 2 cores) and boots a pool on it")]
REPO = Path(__file__).resolve().parents[2]
VENDOR = "-xl-nightly"  # Xen keeps 15 bytes of extra version (".5" + this): "-xenlab-nightly" was cut


@pytest.fixture(scope="module", autouse=True)
def from_ready():
    """No shared lab for this module (see the docstring)."""


def build_hypervisor(work: Path) -> Path:
    """xen/xen.gz of Debian 12's Xen source package, with XEN_VENDORVERSION set."""
    lists, cache = work / "lists", work / "cache"
    for d in (lists / "partial", cache / "archives/partial"):
        d.mkdir(parents=True)
    (work / "src.list").write_text("deb-src http://deb.debian.org/debian bookworm main\n")
    apt = ["apt-get", "-o", f"Dir::Etc::SourceList={work / 'src.list'}", "-o", "Dir::Etc::SourceParts=/dev/null",
           "-o", f"Dir::State::Lists={lists}", "-o", f"Dir::Cache={cache}"]
    subprocess.run([*apt, "update"], check=True, capture_output=True)
    subprocess.run([*apt, "source", "--download-only", "xen"], cwd=work, check=True, capture_output=True)
    (dsc,) = work.glob("xen_*.dsc")
    subprocess.run(["dpkg-source", "-x", dsc.name, "src"], cwd=work, check=True, capture_output=True)
    xen = work / "src/xen"
    jobs = str(os.cpu_count() or 1)
    subprocess.run(["make", "-C", str(xen), "defconfig"], check=True, capture_output=True)
    subprocess.run(["make", "-C", str(xen), f"-j{jobs}", f"XEN_VENDORVERSION={VENDOR}"], check=True,
                   capture_output=True)
    return xen / "xen.gz"


def test_a_xen_built_from_source_boots_a_pool_that_migrates(tmp_path, run_base):
    for tool in ("flex", "bison", "gcc", "make", "dpkg-source"):
        if shutil.which(tool) is None:
            pytest.fail(f"building Xen needs {tool} (apt-get install flex bison build-essential dpkg-dev)")
    hypervisor = build_hypervisor(tmp_path)
    lab_file = tmp_path / "own-build.yaml"
    lab_file.write_text(f"name: own-build\nxen: {{hypervisor: {hypervisor}}}\nhosts:\n  h1:\n  h2:\n")
    lab = Lab(load_lab(lab_file), str(lab_file))
    try:
        lab.up(accel="tcg", tied=True, timeout=900, warm=False)
        for inventory in lab.inventory():
            assert inventory.xen_version.endswith(VENDOR), f"{inventory.name} runs Xen {inventory.xen_version}"
            assert inventory.xen_origin == f"user file {hypervisor}"
        results_path = tmp_path / "results.json"
        proc = subprocess.run([sys.executable, "-m", "xenlab.cli", "run", str(REPO / "scenarios/live-migration-once.yaml"),
                               "--lab", "own-build", "--results", str(results_path)], env=dict(os.environ),
                              capture_output=True, text=True, timeout=1500, check=False)
        print(proc.stdout[-4000:], proc.stderr[-2000:])
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
        [scenario] = RunResults.read(results_path).scenarios
        assert scenario.outcome == "passed"
    finally:
        lab.down()
