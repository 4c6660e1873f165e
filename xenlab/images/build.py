"""Building golden images: debootstrap trees made into ext4/qcow2, and busybox initramfs guests.

Nothing here needs loop mounts: `mkfs.ext4 -d` copies a directory tree into a file
system image, and `qemu-img convert` makes it a compact qcow2 that overlays back onto.
"""

from __future__ import annotations

import gzip
import lzma
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from ..errors import XenlabError
from ..waiting import Progress
from .recipes import FILES_DIR, Recipe

ROOT_LABEL = "xlroot"
INITRAMFS_MODULES = ["virtio_pci", "virtio_blk", "virtio_net", "ext4", "crc32c_generic"]


def debian_mirror(suite: str) -> str:
    """The Debian mirror this machine's apt uses for `suite` (XENLAB_DEBIAN_MIRROR overrides)."""
    env = os.environ.get("XENLAB_DEBIAN_MIRROR")
    if env:
        return env
    candidates: list[tuple[str, list[str]]] = []
    sources_dir = Path("/etc/apt/sources.list.d")
    for path in sorted(sources_dir.glob("*.sources")) if sources_dir.is_dir() else []:
        for stanza in path.read_text().split("\n\n"):
            pairs = (line.split(":", 1) for line in stanza.splitlines() if ":" in line and not line.startswith("#"))
            fields = {k.strip().lower(): v.strip() for k, v in pairs}
            if fields.get("enabled", "yes") != "no" and "deb" in fields.get("types", "").split():
                for uri in fields.get("uris", "").split():
                    candidates.append((uri, fields.get("suites", "").split()))
    sources_list = Path("/etc/apt/sources.list")
    if sources_list.exists():
        for line in sources_list.read_text().splitlines():
            parts = line.split()
            if len(parts) >= 3 and parts[0] == "deb":
                uri_index = 2 if parts[1].startswith("[") else 1
                candidates.append((parts[uri_index], [parts[uri_index + 1]]))
    for uri, suites in candidates:
        if suite in suites and "security" not in uri:
            return uri
    raise XenlabError(
        f"no Debian mirror for {suite!r} in this machine's apt sources; set XENLAB_DEBIAN_MIRROR"
    )


def _run(argv: list[str], what: str, log: Path | None = None, **kwargs) -> None:
    with open(log, "ab") if log else open(os.devnull, "wb") as sink:
        proc = subprocess.run(argv, stdout=sink, stderr=subprocess.STDOUT, check=False, **kwargs)
    if proc.returncode != 0:
        tail = ""
        if log and log.exists():
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:])
        raise XenlabError(f"{what} failed (exit {proc.returncode}): {' '.join(argv[:4])} ...\n{tail}")


def build_image(recipe: Recipe, out: Path, base, progress: Progress) -> None:
    if recipe.kind == "debootstrap":
        build_debootstrap(recipe, out, progress)
    elif recipe.kind == "initramfs":
        build_pv_guest(recipe, out, base, progress)
    else:  # pragma: no cover - the recipe model forbids it
        raise XenlabError(f"unknown recipe kind {recipe.kind}")


def build_debootstrap(recipe: Recipe, out: Path, progress: Progress) -> None:
    if os.geteuid() != 0:
        raise XenlabError("building images with debootstrap needs root (it chroots to configure packages)")
    for tool in ("debootstrap", "mkfs.ext4", "qemu-img"):
        if not shutil.which(tool):
            raise XenlabError(f"{tool} is not installed; run `xenlab doctor`")
    log = out / "build.log"
    with tempfile.TemporaryDirectory(prefix=f"xenlab-{recipe.name}-", dir=out.parent) as work:
        tree = Path(work) / "rootfs"
        mirror = debian_mirror(recipe.suite)
        progress(recipe.name, f"debootstrap {recipe.suite} with {len(recipe.packages)} packages")
        _run(
            ["debootstrap", "--variant=minbase", "--include=" + ",".join(recipe.packages), recipe.suite, str(tree), mirror],
            f"debootstrap of {recipe.name}", log,
        )
        progress(recipe.name, "configuring the tree")
        customize_tree(tree, recipe)
        export_boot_files(tree, recipe, out)
        progress(recipe.name, "making the disk image")
        raw = Path(work) / "disk.raw"
        _run(["mkfs.ext4", "-q", "-F", "-L", ROOT_LABEL, "-d", str(tree), str(raw), f"{recipe.size_gib}G"],
             f"mkfs.ext4 for {recipe.name}", log)
        _run(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(raw), str(out / "disk.qcow2")],
             f"qemu-img convert for {recipe.name}", log)


def customize_tree(tree: Path, recipe: Recipe) -> None:
    """Make a debootstrap tree a lab machine: fstab, management network, sshd, identity seed."""
    # The root file system is mounted read-write by the initramfs (`rw` on the kernel
    # command line) and is not in fstab: systemd would otherwise wait for udev to announce
    # the root device before remounting, which costs ~20 s per boot under TCG.
    (tree / "etc/fstab").write_text("# root is mounted rw by the initramfs; see xenlab/images/build.py\n")
    # systemd-networkd configures the NICs in one process (ifupdown forks dozens of
    # scripts: ~10 s under TCG); the management NIC is the same on every machine.
    network_dir = tree / "etc/systemd/network"
    network_dir.mkdir(parents=True, exist_ok=True)
    shutil.copy(FILES_DIR / "10-mgmt.network", network_dir / "10-mgmt.network")
    shutil.copy(FILES_DIR / "sshd-xenlab.conf", tree / "etc/ssh/sshd_config.d/xenlab.conf")
    for key in (tree / "etc/ssh").glob("ssh_host_*"):
        key.unlink()  # each machine gets its own from the seed disk
    (tree / "etc/machine-id").write_text("")  # given on the kernel command line per machine
    dbus_id = tree / "var/lib/dbus/machine-id"
    if dbus_id.exists() or dbus_id.is_symlink():
        dbus_id.unlink()
    (tree / "etc/hostname").write_text("xenlab\n")
    seed = tree / "usr/local/sbin/xenlab-seed"
    shutil.copy(FILES_DIR / "xenlab-seed.sh", seed)
    seed.chmod(0o755)
    units = tree / "etc/systemd/system"
    shutil.copy(FILES_DIR / "xenlab-seed.service", units / "xenlab-seed.service")
    wants = units / "sysinit.target.wants"
    wants.mkdir(parents=True, exist_ok=True)
    _symlink(wants / "xenlab-seed.service", "/etc/systemd/system/xenlab-seed.service")
    for target, unit in (("multi-user.target.wants", "systemd-networkd.service"),
                         ("sockets.target.wants", "systemd-networkd.socket")):
        (units / target).mkdir(parents=True, exist_ok=True)
        _symlink(units / target / unit, f"/lib/systemd/system/{unit}")
    for unit in recipe.mask_units:
        _symlink(units / unit, "/dev/null")
    # A small initramfs with only what a QEMU q35 machine needs to find its root disk:
    # the default (MODULES=most) is 36 MiB, and decompressing it under TCG takes seconds.
    (tree / "etc/initramfs-tools/modules").write_text("\n".join(INITRAMFS_MODULES) + "\n")
    conf = tree / "etc/initramfs-tools/initramfs.conf"
    conf.write_text(re.sub(r"(?m)^MODULES=.*$", "MODULES=list", conf.read_text()))
    _run(["chroot", str(tree), "update-initramfs", "-u", "-k", "all"], "update-initramfs", tree.parent / "initramfs.log")
    if recipe.boot == "xen":
        # Keep every guest's console in /var/log/xen/console/guest-NAME.log (for artifacts).
        default = tree / "etc/default/xen"
        default.write_text(default.read_text() + '\nXENCONSOLED_ARGS="--log=guest --log-dir=/var/log/xen/console"\n')
    journald = tree / "etc/systemd/journald.conf.d"
    journald.mkdir(parents=True, exist_ok=True)
    (journald / "xenlab.conf").write_text("[Journal]\nStorage=volatile\nRuntimeMaxUse=32M\n")
    # Clean apt caches: they only make the golden image larger.
    shutil.rmtree(tree / "var/cache/apt/archives", ignore_errors=True)
    (tree / "var/cache/apt/archives/partial").mkdir(parents=True, exist_ok=True)


def _symlink(link: Path, target: str) -> None:
    if link.exists() or link.is_symlink():
        link.unlink()
    link.symlink_to(target)


def export_boot_files(tree: Path, recipe: Recipe, out: Path) -> None:
    """Copy out what QEMU boots directly: kernel, initrd, Xen; and modules guests need."""
    boot = tree / "boot"
    kernels = sorted(boot.glob("vmlinuz-*"))
    if not kernels:
        raise XenlabError(f"{recipe.name}: no kernel in /boot; add linux-image-amd64 to its packages")
    kernel = kernels[-1]
    version = kernel.name.removeprefix("vmlinuz-")
    shutil.copy(kernel, out / "vmlinuz")
    shutil.copy(boot / f"initrd.img-{version}", out / "initrd.img")
    (out / "kernel-version").write_text(version + "\n")
    if recipe.boot == "xen":
        xens = sorted(boot.glob("xen-*-amd64.gz"))
        if not xens:
            raise XenlabError(f"{recipe.name}: boot is xen but no /boot/xen-*.gz; add xen-system-amd64")
        (out / "xen.elf").write_bytes(gzip.decompress(xens[-1].read_bytes()))
        (out / "xen-version").write_text(re.sub(r"^xen-|-amd64\.gz$", "", xens[-1].name) + "\n")
    if recipe.export_modules:
        export_modules(tree / "lib/modules" / version, recipe.export_modules, out / "modules")


def export_modules(moddir: Path, names: list[str], dest: Path) -> None:
    """Copy modules and their dependencies, in load order, listed in dest/order."""
    deps: dict[str, tuple[str, list[str]]] = {}
    for line in (moddir / "modules.dep").read_text().splitlines():
        path, _, requires = line.partition(":")
        deps[_module_name(path)] = (path, [_module_name(p) for p in requires.split()])
    order: list[str] = []

    def visit(name: str) -> None:
        key = name.replace("_", "-")
        if key not in deps:
            raise XenlabError(f"kernel module {name} not found in {moddir}")
        if key in order:
            return
        for dep in reversed(deps[key][1]):
            visit(dep)
        order.append(key)

    for name in names:
        visit(name)
    dest.mkdir(parents=True, exist_ok=True)
    for key in order:
        source = moddir / deps[key][0]
        data = source.read_bytes()
        if source.suffix == ".xz":
            data = lzma.decompress(data)
        (dest / f"{key}.ko").write_bytes(data)
    (dest / "order").write_text("\n".join(order) + "\n")


def _compile_static(source: Path, target: Path) -> None:
    """A small static C helper for the guest (no libc in a busybox initramfs)."""
    if not shutil.which("gcc"):
        raise XenlabError("gcc is needed to build the guest's heartbeat sender (Debian packages gcc libc6-dev)")
    proc = subprocess.run(["gcc", "-static", "-O2", "-s", "-o", str(target), str(source)], capture_output=True, text=True,
                          check=False)
    if proc.returncode != 0:
        raise XenlabError(f"compiling {source.name} failed:\n{proc.stderr}")


def _module_name(path: str) -> str:
    name = Path(path).name
    for suffix in (".xz", ".zst", ".gz", ".ko"):
        name = name.removesuffix(suffix)
    return name.replace("_", "-")


def build_pv_guest(recipe: Recipe, out: Path, base, progress: Progress) -> None:
    """Kernel of the base image plus a busybox initramfs with the Xen front-end modules."""
    if base is None:
        raise XenlabError(f"{recipe.name}: an initramfs image needs a base image")
    busybox = Path("/bin/busybox")
    if not busybox.exists() or b"ld-linux" in busybox.read_bytes()[:4096]:  # a dynamic one names its loader
        raise XenlabError("a static busybox is needed at /bin/busybox (Debian package busybox-static)")
    progress(recipe.name, f"busybox initramfs on the {base.name} kernel")
    shutil.copy(base.file("vmlinuz"), out / "vmlinuz")
    shutil.copy(base.file("kernel-version"), out / "kernel-version")
    with tempfile.TemporaryDirectory(prefix="xenlab-initramfs-") as work:
        root = Path(work)
        for d in ("bin", "sbin", "etc", "lib/modules", "proc", "sys", "dev", "tmp", "run", "mnt"):
            (root / d).mkdir(parents=True, exist_ok=True)
        shutil.copy(busybox, root / "bin/busybox")
        (root / "bin/sh").symlink_to("busybox")
        (root / "init").symlink_to("bin/busybox")  # busybox init, configured by /etc/inittab
        for source, target in (("guest-init.sh", "etc/xenlab-init"), ("guest-writer.sh", "bin/xenlab-writer"),
                               ("guest-inittab", "etc/inittab")):
            shutil.copy(FILES_DIR / source, root / target)
            (root / target).chmod(0o755)
        _compile_static(FILES_DIR / "heartbeat.c", root / "bin/xenlab-heartbeat")
        modules = base.file("modules")
        order = (modules / "order").read_text().split()
        for name in order:
            shutil.copy(modules / f"{name}.ko", root / "lib/modules" / f"{name}.ko")
        (root / "etc/modules-load").write_text("\n".join(order) + "\n")
        files = sorted(str(p.relative_to(root)) for p in root.rglob("*"))
        cpio = subprocess.run(
            ["cpio", "--quiet", "-o", "-H", "newc", "-R", "0:0"], cwd=root,
            input="\n".join(files).encode(), capture_output=True, check=False,
        )
        if cpio.returncode != 0:
            raise XenlabError(f"cpio failed: {cpio.stderr.decode(errors='replace')}")
        (out / "initrd.img").write_bytes(gzip.compress(cpio.stdout, compresslevel=6))
