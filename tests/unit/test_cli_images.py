"""`xenlab images build` through the real CLI: a PV-guest initramfs is really built (gcc,
static busybox, cpio) on a base image already in the cache, and every step is shown."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from xenlab.cli import main
from xenlab.errors import XenlabError
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


def test_missing_images_build_side_by_side_and_one_failure_keeps_the_others(images_with_a_cached_base):
    """A lab's missing images are built at once (ensure_all); a failing build neither stops
    the others nor leaves a half image, and its error is what the caller sees."""
    recipes_dir = Path(os.environ["XENLAB_IMAGES"])
    (recipes_dir / "tiny-guest2.yaml").write_text("name: tiny-guest2\nkind: initramfs\nboot: pv\nbase: tiny-xen\n")
    (recipes_dir / "bare-xen.yaml").write_text("name: bare-xen\nkind: debootstrap\nboot: xen\n"
                                               "packages: [xen-system-amd64]\n")
    (recipes_dir / "broken-guest.yaml").write_text("name: broken-guest\nkind: initramfs\nboot: pv\nbase: bare-xen\n")
    cache = ImageCache()
    bare = cache.path_for("bare-xen")  # "built", but without the kernel a guest image copies
    bare.mkdir(parents=True)
    (bare / "manifest.json").write_text(json.dumps({"name": "bare-xen", "digest": bare.name.split("-")[-1],
                                                    "boot": "xen", "built_at": time.time(), "build_seconds": 1.0}))
    seen: list[tuple[str, str]] = []
    with pytest.raises(XenlabError, match="image bare-xen .* lacks vmlinuz"):
        cache.ensure_all(["tiny-guest", "broken-guest", "tiny-guest2", "tiny-guest"],
                         progress=lambda subject, message: seen.append((subject, message)))
    for name in ("tiny-guest", "tiny-guest2"):
        assert cache.lookup(name) is not None, f"{name} was not kept after another build failed"
        assert any(subject == name for subject, _ in seen)
    assert cache.lookup("broken-guest") is None
    assert not [p for p in cache.cache_dir.iterdir() if ".building-" in p.name]
    built = cache.ensure_all(["tiny-guest2", "tiny-guest"])  # all cached now: nothing is rebuilt
    assert sorted(built) == ["tiny-guest", "tiny-guest2"]
