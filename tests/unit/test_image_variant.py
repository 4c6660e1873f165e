"""The pure parts of a Xen image's hardware variants (images/variant.py): the GPT layout,
GRUB's patched boot sectors, grub.cfg and the seed's command lines, the module closure."""

import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from xenlab.errors import XenlabError
from xenlab.images.identity import network_files_for
from xenlab.images.variant import (
    BIOS_GRUB_START,
    ESP_START,
    ROOT_START,
    disk_sectors,
    grub_cfg,
    is_variant_of,
    patch_boot_img,
    patch_core_img,
    seed_boot_config,
    sfdisk_script,
)
from xenlab.lab.machine_hardware import boot_config, variant_kind
from xenlab.lab.qemu import dom0_cmdline, xen_cmdline
from xenlab.plan import plan_lab
from xenlab.spec import parse_lab

GRUB_PC = Path("/usr/lib/grub/i386-pc")


def test_boot_img_keeps_the_partition_table_and_points_at_core_img():
    sector = bytes(range(256)) * 2
    code = patch_boot_img(sector, 2048)
    assert len(code) == 440  # bytes 440.. (disk signature, partition table, 55AA) are not written
    assert struct.unpack_from("<Q", code, 0x5C)[0] == 2048
    assert code[:0x5C] == sector[:0x5C] and code[0x64:] == sector[0x64:440]
    with pytest.raises(XenlabError):
        patch_boot_img(b"\0" * 100, 2048)


def test_core_img_block_list_covers_the_rest_of_it():
    first = bytearray(512)
    struct.pack_into("<QHH", first, 500, 2, 0, 0x820)  # as diskboot.img ships
    image = patch_core_img(bytes(first) + b"x" * (512 * 40 + 7), 2048)
    assert len(image) == 512 * 42
    assert struct.unpack_from("<QHH", image, 500) == (2049, 41, 0x820)
    with pytest.raises(XenlabError, match="does not fit"):
        patch_core_img(b"\0" * (512 * 3000), 2048)


@pytest.mark.skipif(not (GRUB_PC / "diskboot.img").exists(), reason="grub-pc-bin is not installed")
def test_offsets_match_grubs_own_boot_sectors():
    boot = (GRUB_PC / "boot.img").read_bytes()
    assert struct.unpack_from("<Q", boot, 0x5C)[0] == 1  # grub-install's default kernel sector
    diskboot = (GRUB_PC / "diskboot.img").read_bytes()
    assert struct.unpack_from("<QHH", diskboot, 500) == (2, 0, 0x820)


@pytest.mark.skipif(not shutil.which("sfdisk"), reason="sfdisk (fdisk) is not installed")
def test_sfdisk_lays_out_bios_boot_esp_and_root_on_a_file(tmp_path):
    root_sectors = 8 * 2048
    disk = tmp_path / "disk.raw"
    with open(disk, "wb") as f:
        f.truncate(disk_sectors(root_sectors) * 512)
    subprocess.run(["sfdisk", "--no-reread", "--no-tell-kernel", "-q", str(disk)], input=sfdisk_script(root_sectors),
                   text=True, check=True, capture_output=True)
    listed = subprocess.run(["sfdisk", "-d", str(disk)], capture_output=True, text=True, check=True).stdout
    starts = [int(line.split("start=")[1].split(",")[0]) for line in listed.splitlines() if "start=" in line]
    assert starts == [BIOS_GRUB_START, ESP_START, ROOT_START]
    assert "21686148-6449-6E6F-744E-656564454649" in listed and "C12A7328-F81F-11D2-BA4B-00A0C93EC93B" in listed
    assert disk_sectors(root_sectors) % 2048 == 0


def test_grub_cfg_loads_xen_by_multiboot2_with_the_seeds_command_lines():
    cfg = grub_cfg("xen-4.17-amd64.gz", "vmlinuz-6.1.0-50-amd64")
    lines = cfg.splitlines()
    assert "multiboot2 /boot/xen-4.17-amd64.gz $xen_cmdline" in lines
    assert "module2 /boot/vmlinuz-6.1.0-50-amd64 $dom0_cmdline" in lines
    assert "module2 --nounzip /boot/initrd.img-xenlab" in lines  # GRUB would gunzip it otherwise
    assert "search --no-floppy --label XLSEED --set=seed" in lines and lines[-1] == "boot"


def test_a_firmware_host_gets_the_direct_boots_command_lines_on_its_seed():
    plan = plan_lab(parse_lab("name: alpha\nhosts:\n  h1:\n    hardware: {firmware: uefi}\n  h2:\n"))
    h1, h2 = plan.machine("h1"), plan.machine("h2")
    assert boot_config(h1) == f"set xen_cmdline='{xen_cmdline(h1)}'\nset dom0_cmdline='{dom0_cmdline(h1)}'\n"
    assert boot_config(h2) is None and boot_config(plan.machine("services")) is None
    assert variant_kind(h1) == "boot" and variant_kind(h2) is None
    with pytest.raises(XenlabError):
        seed_boot_config("console=com1 x='y'", "root=LABEL=xlroot")


def test_another_disk_bus_boots_directly_with_the_storage_initrd():
    plan = plan_lab(parse_lab("name: alpha\nhardware: {disk: nvme}\nhosts:\n  h1:\n"))
    assert variant_kind(plan.machine("h1")) == "storage"
    assert variant_kind(plan.machine("services")) is None


def test_variants_live_and_go_with_their_image():
    assert is_variant_of(Path("/c/debian-xen-4f0c+boot-23fb"), {"debian-xen-4f0c"})
    assert not is_variant_of(Path("/c/debian-xen-0000+boot-23fb"), {"debian-xen-4f0c"})
    assert not is_variant_of(Path("/c/debian-xen-4f0c"), {"debian-xen-4f0c"})


def test_other_nic_models_are_matched_by_mac_not_by_name():
    virtio = network_files_for(plan_lab(parse_lab("name: alpha\nhosts:\n  h1:\n")).machine("h1"))
    assert virtio["20-eth1.network"].startswith("[Match]\nName=eth1\n\n[Network]\nBridge=xenbr0\n")
    plan = plan_lab(parse_lab("name: alpha\nhardware: {nic: e1000}\nhosts:\n  h1:\n"))
    h1 = plan.machine("h1")
    files = network_files_for(h1)
    assert files["20-eth1.network"].startswith(f"[Match]\nMACAddress={h1.nics[0].mac}\nType=ether\n\n[Network]\n")
    assert "Name=xenbr0" in files["21-xenbr0.network"]  # the bridge (same MAC, Type=bridge) is matched by name
    services = network_files_for(plan.machine("services"))
    assert services["20-eth1.network"].startswith("[Match]\nName=eth1\n")
