"""The lab machines' own initramfs (images/initrd.py): what goes in, in which form."""

from __future__ import annotations

import gzip
import lzma
import subprocess
from pathlib import Path

import pytest

from xenlab.errors import XenlabError
from xenlab.images.initrd import (
    APPLETS,
    build_boot_initrd,
    closure_modules_dep,
    module_closure,
    plain_module_path,
    static_busybox,
)

DEP = ("kernel/drivers/ata/ahci.ko: kernel/drivers/ata/libahci.ko kernel/drivers/ata/libata.ko "
       "kernel/drivers/scsi/scsi_mod.ko\nkernel/drivers/ata/libahci.ko: kernel/drivers/ata/libata.ko "
       "kernel/drivers/scsi/scsi_mod.ko\nkernel/drivers/ata/libata.ko: kernel/drivers/scsi/scsi_mod.ko\n"
       "kernel/drivers/scsi/scsi_mod.ko:\nkernel/drivers/scsi/sd_mod.ko: kernel/drivers/scsi/scsi_mod.ko\n")


def test_module_closure_orders_dependencies_first():
    order = module_closure(DEP, ["ahci", "sd_mod"])
    assert order == ["kernel/drivers/scsi/scsi_mod.ko", "kernel/drivers/ata/libata.ko", "kernel/drivers/ata/libahci.ko",
                     "kernel/drivers/ata/ahci.ko", "kernel/drivers/scsi/sd_mod.ko"]
    with pytest.raises(XenlabError, match="nvme"):
        module_closure(DEP, ["nvme"])


def test_the_archives_modules_dep_names_only_its_modules_uncompressed():
    dep = "kernel/a.ko.xz: kernel/b.ko.xz\nkernel/b.ko.xz:\nkernel/c.ko.xz: kernel/b.ko.xz\n"
    assert closure_modules_dep(dep, ["kernel/b.ko.xz", "kernel/a.ko.xz"]) == "kernel/a.ko: kernel/b.ko\nkernel/b.ko:\n"
    assert plain_module_path("kernel/x.ko.zst") == "kernel/x.ko" and plain_module_path("kernel/x.ko") == "kernel/x.ko"


def _archive(path: Path, tmp_path: Path) -> Path:
    out = tmp_path / "unpacked"
    out.mkdir()
    subprocess.run(["cpio", "--quiet", "-idm"], cwd=out, input=gzip.decompress(path.read_bytes()), check=True)
    return out


def test_the_initrd_holds_busybox_init_and_the_modules_closure(tmp_path):
    busybox = static_busybox()
    moddir = tmp_path / "lib/modules/6.1.0-test"
    for rel, data in (("kernel/drivers/scsi/scsi_mod.ko", b"scsi"), ("kernel/drivers/scsi/sd_mod.ko", b"sd"),
                      ("kernel/drivers/ata/libata.ko", b"libata"), ("kernel/drivers/ata/libahci.ko", b"libahci")):
        (moddir / rel).parent.mkdir(parents=True, exist_ok=True)
        (moddir / rel).write_bytes(data)
    (moddir / "kernel/drivers/ata/ahci.ko.xz").write_bytes(lzma.compress(b"ahci"))
    (moddir / "modules.dep").write_text(DEP.replace("ata/ahci.ko:", "ata/ahci.ko.xz:"))
    wanted = build_boot_initrd(moddir, ["ahci"], tmp_path / "initrd.img", busybox)
    assert "kernel/drivers/scsi/sd_mod.ko" not in wanted and wanted[-1] == "kernel/drivers/ata/ahci.ko.xz"
    root = _archive(tmp_path / "initrd.img", tmp_path)
    assert (root / "init").stat().st_mode & 0o111 and (root / "init").read_text().startswith("#!/bin/sh")
    assert (root / "bin/busybox").read_bytes() == busybox.read_bytes()
    assert all((root / "bin" / a).resolve() == (root / "bin/busybox").resolve() for a in APPLETS)
    kernel = root / "usr/lib/modules/6.1.0-test"
    assert (root / "lib").is_symlink() and (root / "lib/modules/6.1.0-test").resolve() == kernel.resolve()
    assert (kernel / "kernel/drivers/ata/ahci.ko").read_bytes() == b"ahci"  # decompressed for busybox's modprobe
    assert not (kernel / "kernel/drivers/scsi/sd_mod.ko").exists()
    assert (kernel / "modules.dep").read_text().splitlines()[0] == (
        "kernel/drivers/ata/ahci.ko: kernel/drivers/ata/libahci.ko kernel/drivers/ata/libata.ko kernel/drivers/scsi/scsi_mod.ko")
    assert (root / "conf/modules").read_text() == "ahci\n"


def test_a_module_missing_from_the_kernel_is_named(tmp_path):
    moddir = tmp_path / "6.1.0-test"
    moddir.mkdir()
    (moddir / "modules.dep").write_text(DEP)
    with pytest.raises(XenlabError, match="virtio_blk is not in the image's modules.dep"):
        build_boot_initrd(moddir, ["virtio_blk"], tmp_path / "initrd.img")
    with pytest.raises(XenlabError, match="no .*modules.dep"):
        build_boot_initrd(tmp_path / "nothing", ["ahci"], tmp_path / "initrd.img")


def test_a_dynamic_busybox_is_refused(tmp_path):
    fake = tmp_path / "busybox"
    fake.write_bytes(b"\x7fELF" + b"\0" * 100 + b"/lib64/ld-linux-x86-64.so.2")
    with pytest.raises(XenlabError, match="static busybox"):
        static_busybox(fake)


def test_the_init_script_is_valid_busybox_sh():
    init = Path(__file__).resolve().parents[2] / "xenlab/images/files/boot-init.sh"
    subprocess.run([str(static_busybox()), "sh", "-n", str(init)], check=True)
