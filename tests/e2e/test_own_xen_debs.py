"""CI's cheap road to "your own Xen": Debian's Xen hypervisor package repacked with another
version and a changed string in the hypervisor (dpkg-deb -R / -b), given to a one-host lab as
`xen.debs`; the host must boot that hypervisor and report the change. Its own lab (one host,
no services node), not the session's xen-pool2: this module overrides `from_ready`.
"""

from __future__ import annotations

import gzip
import subprocess
from pathlib import Path

import pytest

from xenlab.lab import Lab
from xenlab.spec import load_lab

pytestmark = pytest.mark.e2e
PACKAGE = "xen-hypervisor-4.17-amd64"
MARK = b"xenlab1"  # in place of the Debian revision "deb12u1" in the package's version
# In the hypervisor: its compile domain, which `xl info` shows as cc_compile_domain (same length:
# the ELF keeps its layout).
DOMAIN, NEW_DOMAIN = b"lists.alioth.debian.org", b"lists.xenlab.debian.org"


@pytest.fixture(scope="module", autouse=True)
def from_ready():
    """No shared lab for this module (see the docstring)."""


def repacked_deb(work: Path) -> tuple[Path, str]:
    """Debian's hypervisor package with `deb12u1` made `xenlab1` in its version, and another compile
    domain in the hypervisor."""
    subprocess.run(["apt-get", "download", PACKAGE], cwd=work, check=True, capture_output=True)
    (original,) = work.glob(f"{PACKAGE}_*.deb")
    tree = work / "tree"
    subprocess.run(["dpkg-deb", "-R", str(original), str(tree)], check=True)
    (xen_gz,) = (tree / "boot").glob("xen-*.gz")
    elf = gzip.decompress(xen_gz.read_bytes())
    assert DOMAIN in elf, "Debian's hypervisor no longer carries its compile domain: choose another string"
    xen_gz.write_bytes(gzip.compress(elf.replace(DOMAIN, NEW_DOMAIN)))
    control = tree / "DEBIAN/control"
    text = control.read_text()
    version = next(line.split(": ", 1)[1] for line in text.splitlines() if line.startswith("Version: "))
    new_version = version.replace("deb12u1", MARK.decode()) if "deb12u1" in version else f"{version}+xenlab1"
    control.write_text(text.replace(f"Version: {version}", f"Version: {new_version}"))
    (tree / "DEBIAN/md5sums").unlink(missing_ok=True)
    deb = work / f"{PACKAGE}_{new_version}_amd64.deb"
    subprocess.run(["dpkg-deb", "--root-owner-group", "-b", str(tree), str(deb)], check=True, capture_output=True)
    return deb, new_version


def test_a_repacked_debian_xen_boots_and_the_host_reports_it(tmp_path, run_base):
    deb, version = repacked_deb(tmp_path)
    lab_file = tmp_path / "own-debs.yaml"
    lab_file.write_text(f"name: own-debs\nservices: null\nxen:\n  debs: [{deb.name}]\n  cmdline: sched=credit2\n"
                        "hosts:\n  h1:\n")
    lab = Lab(load_lab(lab_file), str(lab_file))
    try:
        lab.up(accel="tcg", tied=True, timeout=900, warm=False)
        (inventory,) = lab.inventory()
        h1 = lab.host("h1")
        assert h1.succeed(f"dpkg-query -W -f '${{Version}}' {PACKAGE}") == version
        info = h1.succeed("xl info")
        assert NEW_DOMAIN.decode() in info, f"the host runs another hypervisor than the repacked one:\n{info}"
        assert "sched=credit2" in inventory.xen_commandline and inventory.xen_commandline.startswith("console=com1")
        assert "of the user's tools or .debs" in inventory.xen_origin
        assert [f["role"] for f in inventory.user_files] == ["deb"]
        assert inventory.dom0_mode == "PV"
        status = lab.status()
        assert status["machines"][0]["xen"]["user_files"][0]["sha256"] == inventory.user_files[0]["sha256"]
    finally:
        lab.down()
