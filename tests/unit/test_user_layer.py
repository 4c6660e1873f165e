"""A host's own layer, made for real over a small ext4 image: a .deb, a tools tree and a
provisioned file written in by debugfs, dpkg's record replaced, the hypervisor gunzipped."""

from __future__ import annotations

import gzip
import shutil
import subprocess
from pathlib import Path

import pytest

from xenlab.images.cache import BuiltImage
from xenlab.images.userlayer import LayerRequest, ensure_user_layer

pytestmark = pytest.mark.skipif(not all(shutil.which(t) for t in ("mkfs.ext4", "debugfs", "qemu-img", "dpkg-deb")),
                                reason="needs e2fsprogs, qemu-utils and dpkg-deb")


def run(*argv: str) -> str:
    return subprocess.run(argv, check=True, capture_output=True, text=True).stdout


@pytest.fixture
def base(tmp_path: Path) -> BuiltImage:
    tree = tmp_path / "tree"
    (tree / "var/lib/dpkg").mkdir(parents=True)
    (tree / "usr/lib").mkdir(parents=True)
    (tree / "lib").symlink_to("usr/lib")
    (tree / "var/lib/dpkg/status").write_text("Package: xen-utils-common\nStatus: install ok installed\n"
                                              "Version: 4.17.5\n\nPackage: other\nVersion: 1\n")
    image = tmp_path / "cache" / "debian-xen-0123"
    image.mkdir(parents=True)
    run("mkfs.ext4", "-q", "-F", "-L", "xlroot", "-d", str(tree), str(tmp_path / "root.raw"), "64M")
    run("qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(tmp_path / "root.raw"), str(image / "disk.qcow2"))
    for name, data in (("xen.elf", b"\x7fELF\x01base"), ("vmlinuz", b"kernel"), ("initrd.img", b"initrd"),
                       ("kernel-version", b"6.1.0\n")):
        (image / name).write_bytes(data)
    return BuiltImage("debian-xen", "0123", image, "xen", 1.0, 1.0)


def make_deb(tmp_path: Path) -> Path:
    root = tmp_path / "debroot"
    (root / "DEBIAN").mkdir(parents=True)
    (root / "DEBIAN/control").write_text("Package: xen-utils-common\nVersion: 4.17.5+xenlab1\nArchitecture: all\n"
                                         "Maintainer: t <t@example.org>\nDescription: repacked\n")
    (root / "usr/share/xen-marker").parent.mkdir(parents=True)
    (root / "usr/share/xen-marker").write_text("repacked\n")
    (root / "boot").mkdir()
    (root / "boot/xen-4.17-amd64.gz").write_bytes(gzip.compress(b"\x7fELF\x01from-deb"))
    run("dpkg-deb", "--root-owner-group", "-b", str(root), str(tmp_path / "x.deb"))
    return tmp_path / "x.deb"


def read(raw_qcow2: Path, tmp_path: Path, path: str) -> str:
    raw = tmp_path / "check.raw"
    run("qemu-img", "convert", "-f", "qcow2", "-O", "raw", str(raw_qcow2), str(raw))
    return run("debugfs", "-R", f"cat {path}", str(raw))


def test_a_deb_and_a_tools_tree_go_into_the_layer(base, tmp_path):
    deb = make_deb(tmp_path)
    tools = tmp_path / "dist"
    (tools / "lib/xen").mkdir(parents=True)
    (tools / "lib/xen/tool").write_text("tool\n")
    conf = tmp_path / "my.conf"
    conf.write_text("setting=1\n")
    request = LayerRequest(tools=tools, debs=(deb,), files=((conf, "/etc/xen/my.conf"),), run=("echo hi",),
                           digests=(("deb", "d1"), ("tools", "t1"), ("provision", "p1")))
    layer = ensure_user_layer(base, request)
    assert layer.directory.name.startswith("debian-xen-0123+user-")
    assert (layer.directory / "xen.elf").read_bytes() == b"\x7fELF\x01from-deb"  # the .deb's hypervisor boots
    assert "of the user's tools or .debs" in (layer.directory / "xen-origin").read_text()
    disk = layer.directory / "disk.qcow2"
    assert read(disk, tmp_path, "/usr/share/xen-marker") == "repacked\n"
    assert read(disk, tmp_path, "/usr/lib/xen/tool") == "tool\n"  # lib/ of the tree under merged /usr
    assert read(disk, tmp_path, "/etc/xen/my.conf") == "setting=1\n"
    status = read(disk, tmp_path, "/var/lib/dpkg/status")
    assert "Version: 4.17.5+xenlab1" in status and "Version: 4.17.5\n" not in status and "Package: other" in status
    assert "echo hi" in read(disk, tmp_path, "/usr/local/sbin/xenlab-provision")
    raw = tmp_path / "check.raw"
    assert "User:     0   Group:     0" in run("debugfs", "-R", "stat /usr/share/xen-marker", str(raw))
    wanted = run("debugfs", "-R", "stat /etc/systemd/system/multi-user.target.wants/xenlab-provision.service", str(raw))
    assert "Type: symlink" in wanted and "/etc/systemd/system/xenlab-provision.service" in wanted
    # the same request again is the cached layer; another digest is another layer
    assert ensure_user_layer(base, request).directory == layer.directory
    other = LayerRequest(tools=tools, digests=(("tools", "t2"),))
    assert ensure_user_layer(base, other).directory != layer.directory


def test_a_new_hypervisor_alone_makes_no_disk(base, tmp_path):
    xen = tmp_path / "xen.gz"
    xen.write_bytes(gzip.compress(b"\x7fELF\x01mine"))
    layer = ensure_user_layer(base, LayerRequest(hypervisor=xen, digests=(("hypervisor", "h1"),)))
    assert (layer.directory / "xen.elf").read_bytes() == b"\x7fELF\x01mine"
    assert (layer.directory / "disk.qcow2").resolve() == (base.directory / "disk.qcow2").resolve()
    assert (layer.directory / "vmlinuz").read_bytes() == b"kernel"


def test_provenance_says_where_each_part_came_from(base, tmp_path):
    from xenlab.lab.user_xen import provenance

    assert provenance(base.directory)["user_files"] == []
    xen = tmp_path / "xen.gz"
    xen.write_bytes(gzip.compress(b"\x7fELF\x01mine"))
    layer = ensure_user_layer(base, LayerRequest(hypervisor=xen, digests=(("hypervisor", "abc"),)))
    found = provenance(layer.directory)
    assert found["xen_origin"] == f"user file {xen}"
    assert found["dom0_kernel_origin"] == "image debian-xen"
    assert found["user_files"] == [{"role": "hypervisor", "sha256": "abc"}]
