"""Building golden images: debootstrap trees made into ext4/qcow2, and busybox initramfs guests.

Nothing here needs loop mounts: `mkfs.ext4 -d` copies a directory tree into a file
system image, and `qemu-img convert` makes it a compact qcow2 that overlays back onto.
"""

from __future__ import annotations

import gzip
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from ..errors import XenlabError
from ..waiting import Progress
from .initrd import build_boot_initrd, cpio_newc, module_closure, module_key, plain_bytes, static_busybox
from .recipes import FILES_DIR, Recipe
from .rootless import (
    BuildMode,
    PackageCounter,
    Throttle,
    build_mode,
    debootstrap_argv,
    debugfs_xattr_script,
    fakeroot_stage_argv,
    make_ext4,
    mmdebstrap_argv,
    run_reading,
    tar_inventory,
    tree_bytes,
)

ROOT_LABEL = "xlroot"
INITRAMFS_MODULES = ["virtio_pci", "virtio_blk", "virtio_net", "ext4", "crc32c_generic"]
# Every process started during boot costs tens of milliseconds in a PV dom0 under TCG, and
# the three machines of a lab share two cores while they boot: these do nothing for a lab
# machine. getty-static spawns gettys on tty2-6 (~11 s of a host's boot); the serial
# console keeps its getty (systemd-getty-generator).
BOOT_MASKED_UNITS = ("getty-static.service", "getty@tty1.service", "modprobe@efi_pstore.service",
                     "modprobe@fuse.service", "modprobe@dm_mod.service")
# Drivers udev would load for the q35 machine's chipset and legacy devices, none of which a
# lab machine uses (a watchdog, the PC speaker, a PS/2 mouse, SMBus, wireless config):
# explicit `modprobe NAME` still loads them (a blacklist only stops loading by alias).
BLACKLISTED_MODULES = ("iTCO_wdt", "iTCO_vendor_support", "intel_pmc_bxt", "pcspkr", "psmouse", "serio_raw",
                       "i2c_i801", "i2c_smbus", "lpc_ich", "cfg80211", "evdev")
# Xen hosts: dom0 gets credit2 weight 1024 at boot (why: in the unit file).
DOM0_WEIGHT_UNIT = "xenlab-dom0-weight.service"
MASKED_GENERATORS = ("systemd-cryptsetup-generator", "systemd-integritysetup-generator",
                     "systemd-veritysetup-generator", "systemd-gpt-auto-generator",
                     "systemd-hibernate-resume-generator", "systemd-rc-local-generator",
                     "systemd-system-update-generator", "systemd-run-generator")


DEBIAN_SUITES = ("bookworm", "trixie", "forky", "sid")


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
    if suite in DEBIAN_SUITES:  # one Debian archive serves every release (debian13-xen on a Debian 12 machine)
        for uri, suites in candidates:
            if any(s in DEBIAN_SUITES for s in suites) and "security" not in uri:
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
    """A Debian tree of the recipe's packages, customised, as an ext4 disk image in qcow2.
    mmdebstrap in a user namespace for an ordinary user, as root for root (see rootless.py);
    debootstrap when asked for."""
    mode = build_mode()
    progress(recipe.name, f"building {mode.why}")
    tools = ("debootstrap", "mkfs.ext4", "qemu-img") if mode.kind == "debootstrap" else \
        ("mmdebstrap", "fakeroot", "mkfs.ext4", "debugfs", "qemu-img")
    for tool in tools:
        if not shutil.which(tool):
            raise XenlabError(f"{tool} is not installed; run `xenlab doctor`")
    log = out / "build.log"
    say = Throttle(progress, recipe.name)
    with tempfile.TemporaryDirectory(prefix=f"xenlab-{recipe.name}-", dir=out.parent) as work:
        raw = Path(work) / "disk.raw"
        mirror = debian_mirror(recipe.suite)
        progress(recipe.name, f"{recipe.suite} from {mirror} with {len(recipe.packages)} packages and their dependencies")
        counter = PackageCounter()

        def on_line(line: str) -> None:
            if (said := counter.feed(line)) is not None:
                say(*said)

        if mode.kind != "debootstrap":
            _build_mmdebstrap(recipe, mode, out, Path(work), mirror, raw, log, say, on_line)
        else:
            tree = Path(work) / "rootfs"
            run_reading(debootstrap_argv(recipe.suite, recipe.packages, mirror, tree), f"debootstrap of {recipe.name}",
                        log, on_line)
            say.flush()
            say("configuring the tree and building its initramfs", step=True)
            customize_tree(tree, recipe)
            export_boot_files(tree, recipe, out)
            say("making the disk image", step=True)
            with open(log, "ab") as sink:
                make_ext4(tree, raw, recipe.size_gib, tree_bytes(tree), say, sink)
        say("converting the disk image to qcow2", step=True)
        run_reading(["qemu-img", "convert", "-p", "-f", "raw", "-O", "qcow2", str(raw), str(out / "disk.qcow2")],
                    f"qemu-img convert for {recipe.name}", log, _qemu_img_progress(say))
        say.flush()


def _build_mmdebstrap(recipe: Recipe, mode: BuildMode, out: Path, work: Path, mirror: str, raw: Path, log: Path,
                      say: Throttle, on_line) -> None:
    """mmdebstrap (in a user namespace, or as root) to a tarball; the tree's customisation
    and its disk image in one fakeroot session; file capabilities and ACLs copied in with
    debugfs. Root takes the same road as an ordinary user, so both get the same image."""
    tarball = work / "rootfs.tar"
    run_reading(mmdebstrap_argv(recipe.suite, recipe.packages, mirror, tarball, mode.mmdebstrap_mode),
                f"mmdebstrap of {recipe.name}", log, on_line)
    say.flush()
    recipe_json = work / "recipe.json"
    recipe_json.write_text(recipe.model_dump_json())
    say("extracting the tree under fakeroot", step=True)
    package_root = str(Path(__file__).resolve().parents[2])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")]))}

    def stage_line(line: str) -> None:
        if line.startswith("@@ "):
            message = line[3:]
            say(message, step=message == "making the disk image")

    run_reading(fakeroot_stage_argv(tarball, work / "rootfs", recipe_json, out, raw),
                f"customising {recipe.name} under fakeroot", log, stage_line, env=env)
    xattrs = tar_inventory(tarball).xattrs
    tarball.unlink()
    if xattrs:
        say(f"copying {len(xattrs)} file capabilities and ACLs into the disk image", step=True)
        values = work / "xattrs"
        values.mkdir()
        script = work / "xattrs.debugfs"
        script.write_text(debugfs_xattr_script(xattrs, values))
        run_reading(["debugfs", "-w", "-f", str(script), str(raw)], f"debugfs ea_set for {recipe.name}", log,
                    lambda line: None)
        check_xattrs(raw, xattrs, log)


def check_xattrs(raw: Path, xattrs: list[tuple[str, str, bytes]], log: Path) -> None:
    """debugfs does not fail when a request fails: read every attribute back."""
    paths = sorted({path for path, _, _ in xattrs})
    for path in paths:
        listing = subprocess.run(["debugfs", "-R", f'ea_list "{path}"', str(raw)], capture_output=True, text=True,
                                 check=False).stdout
        for name in (n for p, n, _ in xattrs if p == path):
            if f"{name} (" not in listing:
                with open(log, "a") as sink:
                    sink.write(listing)
                raise XenlabError(f"the disk image lacks {name} on {path} after debugfs ea_set (see {log})")


def _qemu_img_progress(say: Throttle):
    def on_line(line: str) -> None:
        if found := re.search(r"\((\d+)\.\d+/100%\)", line):
            say(f"converting the disk image to qcow2: {found.group(1)}%")
    return on_line


def customize_tree(tree: Path, recipe: Recipe) -> None:
    """Make a debootstrap tree a lab machine: fstab, management network, sshd, identity
    seed, fewer boot-time processes. (Its initramfs is made by `export_boot_files`.)"""
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
    _quiet_ssh_sessions(tree / "etc/pam.d/sshd")
    for key in (tree / "etc/ssh").glob("ssh_host_*"):
        key.unlink()  # each machine gets its own from the seed disk
    machine_id = tree / "etc/machine-id"
    machine_id.write_text("")  # given on the kernel command line per machine
    machine_id.chmod(0o444)  # as systemd leaves it (mmdebstrap's tree has it 0644)
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
    for unit in (*recipe.mask_units, *BOOT_MASKED_UNITS):
        _symlink(units / unit, "/dev/null")
    for unit in recipe.disable_units:  # installed, started on demand (`systemctl start` still works)
        for wants in units.glob("*.wants"):  # (glob would follow the link to the tree's absolute target)
            link = wants / unit
            if link.is_symlink() or link.exists():
                link.unlink()
    blacklist = "".join(f"blacklist {name}\n" for name in BLACKLISTED_MODULES)
    (tree / "etc/modprobe.d/xenlab-lab-machine.conf").write_text(f"# see xenlab/images/build.py\n{blacklist}")
    generators = tree / "etc/systemd/system-generators"
    generators.mkdir(parents=True, exist_ok=True)
    for generator in MASKED_GENERATORS:
        _symlink(generators / generator, "/dev/null")
    if recipe.boot == "xen":
        # Keep every guest's console in /var/log/xen/console/guest-NAME.log (for artifacts).
        default = tree / "etc/default/xen"
        default.write_text(default.read_text() + '\nXENCONSOLED_ARGS="--log=guest --log-dir=/var/log/xen/console"\n')
        (tree / "var/log/xen/console").mkdir(parents=True, exist_ok=True)  # xenconsoled does not make it
        shutil.copy(FILES_DIR / DOM0_WEIGHT_UNIT, units / DOM0_WEIGHT_UNIT)
        _symlink(units / "multi-user.target.wants" / DOM0_WEIGHT_UNIT, f"/etc/systemd/system/{DOM0_WEIGHT_UNIT}")
    journald = tree / "etc/systemd/journald.conf.d"
    journald.mkdir(parents=True, exist_ok=True)
    (journald / "xenlab.conf").write_text("[Journal]\nStorage=volatile\nRuntimeMaxUse=32M\n")
    # Clean apt caches: they only make the golden image larger.
    shutil.rmtree(tree / "var/cache/apt/archives", ignore_errors=True)
    (tree / "var/cache/apt/archives/partial").mkdir(parents=True, exist_ok=True)


def _quiet_ssh_sessions(pam_sshd: Path) -> None:
    """No message of the day for SSH sessions: Debian's pam_motd runs the update-motd.d
    scripts at every login, a shell and two programs that cost a Xen host's dom0 ~0.5 s of
    its first SSH session after a restore under TCG (measured: 0.4-0.7 s instead of
    0.8-1.5 s). The lab controller reads no greeting."""
    if not pam_sshd.exists():
        return
    lines = pam_sshd.read_text().splitlines()
    kept = [f"# {line}  (xenlab: no motd)" if "pam_motd.so" in line and not line.lstrip().startswith("#") else line
            for line in lines]
    pam_sshd.write_text("\n".join(kept) + "\n")


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
    build_boot_initrd(tree / "lib/modules" / version, INITRAMFS_MODULES, out / "initrd.img")
    shutil.copy(out / "initrd.img", boot / f"initrd.img-{version}")  # the disk boots as QEMU boots it
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
    order = [(module_key(rel), rel) for rel in module_closure((moddir / "modules.dep").read_text(), names)]
    dest.mkdir(parents=True, exist_ok=True)
    for key, rel in order:
        (dest / f"{key}.ko").write_bytes(plain_bytes(moddir / rel))
    (dest / "order").write_text("\n".join(key for key, _ in order) + "\n")


def _compile_static(source: Path, target: Path) -> None:
    """A small static C helper for the guest (no libc in a busybox initramfs)."""
    if not shutil.which("gcc"):
        raise XenlabError("gcc is needed to build the guest's heartbeat sender (Debian packages gcc libc6-dev)")
    proc = subprocess.run(["gcc", "-static", "-O2", "-s", "-o", str(target), str(source)], capture_output=True, text=True,
                          check=False)
    if proc.returncode != 0:
        raise XenlabError(f"compiling {source.name} failed:\n{proc.stderr}")


def build_pv_guest(recipe: Recipe, out: Path, base, progress: Progress) -> None:
    """Kernel of the base image plus a busybox initramfs with the Xen front-end modules."""
    if base is None:
        raise XenlabError(f"{recipe.name}: an initramfs image needs a base image")
    busybox = static_busybox()
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
        _compile_static(FILES_DIR / "traffic.c", root / "bin/xenlab-traffic")
        modules = base.file("modules")
        order = (modules / "order").read_text().split()
        for name in order:
            shutil.copy(modules / f"{name}.ko", root / "lib/modules" / f"{name}.ko")
        (root / "etc/modules-load").write_text("\n".join(order) + "\n")
        (out / "initrd.img").write_bytes(gzip.compress(cpio_newc(root), compresslevel=6))
