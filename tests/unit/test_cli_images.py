"""`xenlab images build` through the real CLI: a PV-guest initramfs is really built (gcc,
static busybox, cpio) on a base image already in the cache, and every step is shown."""

from __future__ import annotations

import gzip
import json
import shutil
import time

import pytest
from click.testing import CliRunner

from xenlab.cli import main
from xenlab.images import ImageCache


@pytest.fixture
def images_with_a_cached_base(tmp_path, monkeypatch):
    if not (shutil.which("gcc") and shutil.which("cpio")):
        pytest.fail("gcc and cpio are needed to build a guest initramfs: run ./setup.sh")
    images, cache = tmp_path / "images", tmp_path / "cache"
    images.mkdir()
    (images / "tiny-xen.yaml").write_text("name: tiny-xen\nkind: debootstrap\nboot: xen\n"
                                          "packages: [xen-system-amd64]\nexport_modules: [xen-netfront]\n")
    (images / "tiny-guest.yaml").write_text("name: tiny-guest\nkind: initramfs\nboot: pv\nbase: tiny-xen\n")
    monkeypatch.setenv("XENLAB_IMAGES", str(images))
    monkeypatch.setenv("XENLAB_CACHE", str(cache))
    base = ImageCache().path_for("tiny-xen")  # as a debootstrap build leaves it (not booted here)
    (base / "modules").mkdir(parents=True)
    (base / "vmlinuz").write_bytes(b"kernel")
    (base / "kernel-version").write_text("6.1.0-test\n")
    (base / "modules" / "order").write_text("xen-netfront\n")
    (base / "modules" / "xen-netfront.ko").write_bytes(b"module")
    (base / "manifest.json").write_text(json.dumps({"name": "tiny-xen", "digest": base.name.split("-")[-1],
                                                    "boot": "xen", "built_at": time.time(), "build_seconds": 1.0}))
    return cache


def test_images_build_shows_each_step_and_leaves_a_bootable_initramfs(images_with_a_cached_base):
    result = CliRunner().invoke(main, ["images", "build", "tiny-guest"])
    assert result.exit_code == 0, result.output
    assert "tiny-guest busybox initramfs on the tiny-xen kernel" in result.output
    built = ImageCache().lookup("tiny-guest")
    assert built is not None
    initramfs = gzip.decompress(built.file("initrd.img").read_bytes())
    for member in (b"etc/xenlab-init", b"bin/xenlab-heartbeat", b"lib/modules/xen-netfront.ko"):
        assert member in initramfs
    again = CliRunner().invoke(main, ["images", "build", "tiny-guest"])  # cached: nothing is rebuilt
    assert again.exit_code == 0 and "busybox initramfs" not in again.output
