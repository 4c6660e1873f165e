"""Hardware variants of a Xen host image, made from its cached root file system.

A host whose root disk is not on virtio-blk needs the other bus's drivers in dom0's
initramfs (`storage`: the image's own initrd with a second cpio archive appended, which
the kernel unpacks over the first). A host booted by firmware (`bios`, `uefi`) needs a
disk as an installed server has (`boot`): a GPT disk with a BIOS boot partition holding
GRUB's core.img, an EFI system partition holding GRUB as BOOTX64.EFI, and the image's
ext4 root file system with /boot/grub/grub.cfg, which loads Xen with multiboot2. Both
are built without loop devices or mounts (debugfs, sfdisk on a file, mkfs.vfat -C and
mtools, plain writes at offsets, qemu-img), and cached next to the image they come from,
keyed by its digest and this builder's: a `direct` virtio-blk host keeps the image as it is.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import struct
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from ..errors import XenlabError
from ..hardware import STORAGE_MODULES
from ..waiting import Progress, quiet
from .build import INITRAMFS_MODULES
from .cache import BuiltImage, publish
from .identity import BOOT_CONFIG
from .initrd import module_closure

VARIANT_KINDS = ("storage", "boot")
SECTOR = 512
BIOS_GRUB_START, BIOS_GRUB_SECTORS = 2048, 2048  # 1 MiB: GRUB's core.img
ESP_START, ESP_SECTORS = 4096, 65536  # 32 MiB FAT: EFI/BOOT/BOOTX64.EFI
ROOT_START = ESP_START + ESP_SECTORS
GPT_TYPES = {"bios_grub": "21686148-6449-6E6F-744E-656564454649", "esp": "C12A7328-F81F-11D2-BA4B-00A0C93EC93B",
             "root": "0FC63DAF-8483-4772-8E79-3D69D8477DE4"}
BOOT_INITRD = "/boot/initrd.img-xenlab"  # the storage initrd, inside the boot variant's root
GRUB_MODULES = ("part_gpt", "part_msdos", "ext2", "fat", "search", "search_label", "search_fs_file", "configfile",
                "normal", "echo", "test", "multiboot2", "gzio", "serial", "terminal", "sleep")
BIOS_GRUB_MODULES = ("biosdisk",)
EFI_GRUB_MODULES = ("efi_gop",)
TOOLS = {"storage": ("qemu-img", "debugfs", "depmod", "cpio"),
         "boot": ("qemu-img", "debugfs", "depmod", "cpio", "sfdisk", "grub-mkimage", "mkfs.vfat", "mmd", "mcopy")}
PACKAGES = {"debugfs": "e2fsprogs", "depmod": "kmod", "cpio": "cpio", "sfdisk": "fdisk", "qemu-img": "qemu-utils",
            "grub-mkimage": "grub-common (with grub-pc-bin and grub-efi-amd64-bin)", "mkfs.vfat": "dosfstools",
            "mmd": "mtools", "mcopy": "mtools"}
GRUB_DIRS = {"i386-pc": Path("/usr/lib/grub/i386-pc"), "x86_64-efi": Path("/usr/lib/grub/x86_64-efi")}


def early_config() -> str:
    """Built into GRUB's image: talk on the serial port, find the root file system by label, read its grub.cfg."""
    return ("serial --unit=0 --speed=115200\nterminal_input serial\nterminal_output serial\n"
            "search --no-floppy --label xlroot --set=root\nset prefix=($root)/boot/grub\n"
            "configfile ($root)/boot/grub/grub.cfg\n")


def grub_cfg(xen: str, kernel: str) -> str:
    """The installed host's grub.cfg: Xen by multiboot2 with dom0's kernel and initrd as modules.
    The command lines are each host's own (machine-id, hostname, memory): they come from its
    seed disk (`seed_boot_config`), the same lines `direct` boots give QEMU."""
    return (
        "# xenlab: Xen by multiboot2 from GRUB, as an installed server boots (see xenlab/images/variant.py)\n"
        "set timeout=0\n"
        "search --no-floppy --label XLSEED --set=seed\n"
        f"source ($seed)/{BOOT_CONFIG}\n"
        'echo "xenlab: GRUB ${grub_platform} loading Xen by multiboot2"\n'
        f"multiboot2 /boot/{xen} $xen_cmdline\n"
        f"module2 /boot/{kernel} $dom0_cmdline\n"
        f"module2 --nounzip {BOOT_INITRD}\n"
        "boot\n"
    )


def seed_boot_config(xen_cmdline: str, dom0_cmdline: str) -> str:
    """The seed disk's part of grub.cfg: this host's command lines as GRUB variables."""
    for line in (xen_cmdline, dom0_cmdline):
        if re.search(r"['\\\n]", line):
            raise XenlabError(f"a boot command line cannot hold quotes, backslashes or newlines: {line!r}")
    return f"set xen_cmdline='{xen_cmdline}'\nset dom0_cmdline='{dom0_cmdline}'\n"


def sfdisk_script(root_sectors: int) -> str:
    """GPT: BIOS boot partition (core.img), EFI system partition, the root file system."""
    return (
        "label: gpt\n"
        f"start={BIOS_GRUB_START}, size={BIOS_GRUB_SECTORS}, type={GPT_TYPES['bios_grub']}, name=bios_grub\n"
        f"start={ESP_START}, size={ESP_SECTORS}, type={GPT_TYPES['esp']}, name=esp\n"
        f"start={ROOT_START}, size={root_sectors}, type={GPT_TYPES['root']}, name=root\n"
    )


def disk_sectors(root_sectors: int) -> int:
    """The whole disk: the partitions, the backup GPT (33 sectors), rounded up to a MiB."""
    total = ROOT_START + root_sectors + 33
    return -(-total // 2048) * 2048


def patch_boot_img(boot_img: bytes, core_lba: int) -> bytes:
    """GRUB's MBR code (440 bytes: the protective MBR's partition table stays) with the
    sector of core.img where grub-install would put it (GRUB_BOOT_MACHINE_KERNEL_SECTOR, 0x5c)."""
    if len(boot_img) != SECTOR:
        raise XenlabError(f"GRUB's boot.img is {len(boot_img)} bytes, not one sector")
    code = bytearray(boot_img[:440])
    code[0x5C:0x64] = struct.pack("<Q", core_lba)
    return bytes(code)


def patch_core_img(core_img: bytes, core_lba: int) -> bytes:
    """core.img's first sector (diskboot) loads the rest from one block list at its end:
    (start: u64, sectors: u16, segment: u16); written as grub-install's setup would."""
    sectors = -(-len(core_img) // SECTOR)
    if sectors > BIOS_GRUB_SECTORS:
        raise XenlabError(f"GRUB's core.img ({sectors} sectors) does not fit the BIOS boot partition")
    image = bytearray(core_img.ljust(sectors * SECTOR, b"\0"))
    entry = SECTOR - 12
    segment = struct.unpack_from("<H", image, entry + 10)[0]
    struct.pack_into("<QHH", image, entry, core_lba + 1, sectors - 1, segment)
    return bytes(image)


def variant_digest(base: BuiltImage, kind: str) -> str:
    """The variant's key: the image it comes from and how this builder makes it."""
    h = hashlib.sha256()
    h.update(f"{base.name}:{base.digest}:{kind}".encode())
    h.update(Path(__file__).read_bytes())
    h.update(",".join(INITRAMFS_MODULES + list(STORAGE_MODULES)).encode())
    return h.hexdigest()[:12]


@dataclass(frozen=True)
class BuiltVariant:
    """A built variant: `storage` holds initrd.img; `boot` holds disk.qcow2 (and the same initrd)."""

    base: BuiltImage
    kind: str
    directory: Path
    build_seconds: float

    @property
    def initrd(self) -> Path:
        return self.directory / "initrd.img"

    @property
    def disk(self) -> Path:
        return self.directory / "disk.qcow2" if self.kind == "boot" else self.base.disk


def variant_path(base: BuiltImage, kind: str) -> Path:
    return base.directory.with_name(f"{base.directory.name}+{kind}-{variant_digest(base, kind)}")


def is_variant_of(entry: Path, current: set[str]) -> bool:
    """A cache directory that is a variant of a current image (not stale while its image is not)."""
    head, sep, _ = entry.name.partition("+")
    return bool(sep) and head in current


def ensure_variant(base: BuiltImage, kind: str, progress: Progress = quiet) -> BuiltVariant:
    """The cached variant `kind` of image `base`, built first if needed (locked like images)."""
    if kind not in VARIANT_KINDS:
        raise XenlabError(f"unknown image variant {kind!r}")
    if base.boot != "xen":
        raise XenlabError(f"image {base.name} boots {base.boot}: only Xen host images have hardware variants")
    final = variant_path(base, kind)
    manifest = final / "manifest.json"
    if not manifest.exists():
        with open(final.with_name(f".{final.name}.lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not manifest.exists():
                _build(base, kind, final, progress)
    data = json.loads(manifest.read_text())
    return BuiltVariant(base, kind, final, data["build_seconds"])


def _build(base: BuiltImage, kind: str, final: Path, progress: Progress) -> None:
    for tool in TOOLS[kind]:
        if not shutil.which(tool):
            raise XenlabError(f"{tool} is needed to build the {kind} variant of {base.name} "
                              f"(Debian package {PACKAGES[tool]}); run ./setup.sh or `xenlab doctor`")
    staging = final.with_name(final.name + f".building-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    started = time.monotonic()
    try:
        with tempfile.TemporaryDirectory(prefix="xenlab-variant-", dir=final.parent) as work:
            builder = _Builder(base, Path(work), staging / "build.log", progress)
            builder.storage_initrd(staging / "initrd.img")
            if kind == "boot":
                builder.boot_disk(staging / "initrd.img", staging / "disk.qcow2")
        seconds = round(time.monotonic() - started, 1)
        publish(staging, final, {
            "image": base.name, "image_digest": base.digest, "kind": kind, "digest": variant_digest(base, kind),
            "built_at": time.time(), "build_seconds": seconds})
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


class _Builder:
    """The steps of a variant build, on a raw copy of the image's root file system."""

    def __init__(self, base: BuiltImage, work: Path, log: Path, progress: Progress):
        self.base, self.work, self.log, self.progress = base, work, log, progress
        self.version = base.file("kernel-version").read_text().strip()
        self.root = work / "root.ext4"
        self.moddir = f"/usr/lib/modules/{self.version}"

    def run(self, argv: list[str], what: str, **kwargs) -> str:
        proc = subprocess.run(argv, capture_output=True, text=True, check=False, **kwargs)
        with open(self.log, "a") as log:
            log.write(f"$ {' '.join(argv)}\n{proc.stdout}{proc.stderr}")
        if proc.returncode != 0:
            raise XenlabError(f"{what} failed (exit {proc.returncode}): {proc.stderr.strip()[-800:]}")
        return proc.stdout

    def debugfs(self, requests: list[str], what: str, write: bool = False) -> str:
        script = self.work / "debugfs.cmds"
        script.write_text("\n".join(requests) + "\n")
        return self.run(["debugfs", *(["-w"] if write else []), "-f", str(script), str(self.root)], what)

    def root_filesystem(self) -> Path:
        if not self.root.exists():
            self.progress(self.base.name, "reading the image's root file system")
            self.run(["qemu-img", "convert", "-f", "qcow2", "-O", "raw", str(self.base.disk), str(self.root)],
                     f"qemu-img convert of {self.base.name}")
        return self.root

    def storage_initrd(self, target: Path) -> None:
        """The image's initrd plus a cpio archive with the storage drivers, their modules.dep
        (depmod over the union) and /conf/modules naming them, unpacked over the first."""
        self.progress(self.base.name, f"adding {', '.join(STORAGE_MODULES)} to dom0's initramfs")
        self.root_filesystem()
        dump = self.work / "modules.dep"
        self.debugfs([f'dump "{self.moddir}/modules.dep" "{dump}"'], "reading modules.dep")
        if not dump.exists():
            raise XenlabError(f"{self.base.name}: no {self.moddir}/modules.dep in its root file system")
        wanted = module_closure(dump.read_text(), INITRAMFS_MODULES + list(STORAGE_MODULES))
        tree = self.work / "initrd-extra"
        modroot = tree / self.moddir.lstrip("/")
        requests = []
        for rel in wanted:
            (modroot / rel).parent.mkdir(parents=True, exist_ok=True)
            requests.append(f'dump "{self.moddir}/{rel}" "{modroot / rel}"')
        for name in ("modules.builtin", "modules.builtin.modinfo", "modules.order"):
            requests.append(f'dump "{self.moddir}/{name}" "{modroot / name}"')
        self.debugfs(requests, "reading kernel modules")
        missing = [rel for rel in wanted if not (modroot / rel).exists()]
        if missing:
            raise XenlabError(f"{self.base.name}: modules missing from its root file system: {', '.join(missing)}")
        self.run(["depmod", "-b", str(tree / "usr"), self.version], "depmod")
        (tree / "conf").mkdir()
        (tree / "conf/modules").write_text("\n".join(INITRAMFS_MODULES + list(STORAGE_MODULES)) + "\n")
        names = sorted(str(p.relative_to(tree)) for p in tree.rglob("*"))
        cpio = subprocess.run(["cpio", "--quiet", "-o", "-H", "newc", "-R", "0:0"], cwd=tree,
                              input="\n".join(names).encode(), capture_output=True, check=False)
        if cpio.returncode != 0:
            raise XenlabError(f"cpio failed: {cpio.stderr.decode(errors='replace')}")
        first = self.base.file("initrd.img").read_bytes()
        # The kernel finds a following uncompressed archive at a 4-byte boundary, skipping zeros.
        target.write_bytes(first + b"\0" * (-len(first) % SECTOR) + cpio.stdout)

    def boot_disk(self, initrd: Path, target: Path) -> None:
        """The partitioned disk GRUB boots from (BIOS and UEFI alike), as qcow2."""
        root = self.root_filesystem()
        listing = self.debugfs(["ls -l /boot"], "listing /boot")
        xens = sorted(re.findall(r"\s(xen-[0-9.]+-amd64\.gz)\s*$", listing, re.MULTILINE))
        kernel = f"vmlinuz-{self.version}"
        if not xens or kernel not in listing:
            raise XenlabError(f"{self.base.name}: /boot lacks xen-*-amd64.gz or {kernel}")
        self.progress(self.base.name, f"installing GRUB: grub.cfg loads {xens[-1]} by multiboot2")
        cfg = self.work / "grub.cfg"
        cfg.write_text(grub_cfg(xens[-1], kernel))
        existing = self.debugfs(["ls /boot"], "listing /boot")
        self.debugfs(
            ([] if re.search(r"\sgrub\s", existing) else ["mkdir /boot/grub"]) + [
                f'write "{cfg}" /boot/grub/grub.cfg', f'write "{initrd}" {BOOT_INITRD}',
                *(f"sif {path} {field} 0" for path in ("/boot/grub", "/boot/grub/grub.cfg", BOOT_INITRD)
                  for field in ("uid", "gid")),
                "sif /boot/grub/grub.cfg mode 0100644", f"sif {BOOT_INITRD} mode 0100644"],
            "writing grub.cfg and the initrd into /boot", write=True)
        check = self.debugfs(["ls -l /boot/grub", "ls -l /boot"], "checking /boot")
        if "grub.cfg" not in check or Path(BOOT_INITRD).name not in check:
            raise XenlabError(f"debugfs did not write grub.cfg or the initrd (see {self.log})")
        early = self.work / "early.cfg"
        early.write_text(early_config())
        core = self.work / "core.img"
        efi = self.work / "BOOTX64.EFI"
        for platform, output, extra in (("i386-pc", core, BIOS_GRUB_MODULES), ("x86_64-efi", efi, EFI_GRUB_MODULES)):
            if not GRUB_DIRS[platform].is_dir():
                raise XenlabError(f"GRUB for {platform} is not installed (Debian package "
                                  f"{'grub-pc-bin' if platform == 'i386-pc' else 'grub-efi-amd64-bin'})")
            self.run(["grub-mkimage", "-O", platform, "-d", str(GRUB_DIRS[platform]), "-o", str(output),
                      "-c", str(early), "-p", "/boot/grub", *GRUB_MODULES, *extra], f"grub-mkimage for {platform}")
        esp = self.work / "esp.img"
        self.run(["mkfs.vfat", "-F", "16", "-n", "XLESP", "-C", str(esp), str(ESP_SECTORS * SECTOR // 1024)],
                 "mkfs.vfat of the EFI system partition")
        self.run(["mmd", "-i", str(esp), "::/EFI", "::/EFI/BOOT"], "mmd on the EFI system partition")
        self.run(["mcopy", "-i", str(esp), str(efi), "::/EFI/BOOT/BOOTX64.EFI"], "mcopy of BOOTX64.EFI")
        root_sectors = root.stat().st_size // SECTOR
        disk = self.work / "disk.raw"
        with open(disk, "wb") as f:
            f.truncate(disk_sectors(root_sectors) * SECTOR)
        script = sfdisk_script(root_sectors)
        self.run(["sfdisk", "--no-reread", "--no-tell-kernel", "-q", str(disk)], "sfdisk", input=script)
        boot_img = (GRUB_DIRS["i386-pc"] / "boot.img").read_bytes()
        self.progress(self.base.name, "writing GRUB, the EFI system partition and the root file system")
        with open(disk, "r+b") as f:
            f.write(patch_boot_img(boot_img, BIOS_GRUB_START))
            f.seek(BIOS_GRUB_START * SECTOR)
            f.write(patch_core_img(core.read_bytes(), BIOS_GRUB_START))
            f.seek(ESP_START * SECTOR)
            f.write(esp.read_bytes())
        self.run(["dd", f"if={root}", f"of={disk}", "bs=4M", f"seek={ROOT_START * SECTOR}", "oflag=seek_bytes",
                  "conv=notrunc,sparse", "status=none"], "dd of the root file system")
        self.progress(self.base.name, "converting the boot disk to qcow2")
        self.run(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(disk), str(target)], "qemu-img convert")
