"""The initramfs a lab machine boots with: busybox, a short /init, and its root disk's modules.

Debian's initramfs-tools image starts udev and waits for it to settle before it mounts the
root file system; in a PV dom0 under TCG, where every process costs tens of milliseconds,
that was ~20 s of each Xen host's boot. This one loads the modules it names, finds the
root by label and switches to it (files/boot-init.sh). It is built from the image's tree
with the build machine's static busybox (the one the PV guest's initramfs uses), so
every road (mmdebstrap, debootstrap, with or without root) makes the same archive.
"""

from __future__ import annotations

import gzip
import lzma
import shutil
import subprocess
import tempfile
from pathlib import Path

from ..errors import XenlabError

FILES_DIR = Path(__file__).parent / "files"
BUSYBOX = Path("/bin/busybox")
# What /init runs; each is a link to busybox.
APPLETS = ("sh", "mount", "modprobe", "findfs", "switch_root", "sleep", "cat")


def static_busybox(path: Path = BUSYBOX) -> Path:
    """The build machine's busybox, which must be static: nothing else is in the archive."""
    if not path.exists() or b"ld-linux" in path.read_bytes()[:4096]:  # a dynamic one names its loader
        raise XenlabError(f"a static busybox is needed at {path} (Debian package busybox-static)")
    return path


def module_key(path: str) -> str:
    """A module's name as modprobe compares them: file name without suffixes, '-' for '_'."""
    name = Path(path).name
    for suffix in (".xz", ".zst", ".gz", ".ko"):
        name = name.removesuffix(suffix)
    return name.replace("_", "-")


def module_closure(modules_dep: str, names: tuple[str, ...] | list[str]) -> list[str]:
    """The module files (paths as modules.dep writes them) that `names` need, dependencies first."""
    deps: dict[str, tuple[str, list[str]]] = {}
    for line in modules_dep.splitlines():
        path, _, requires = line.partition(":")
        deps[module_key(path)] = (path, [module_key(p) for p in requires.split()])
    order: list[str] = []

    def visit(name: str) -> None:
        key = name.replace("_", "-")
        if key not in deps:
            raise XenlabError(f"kernel module {name} is not in the image's modules.dep")
        if deps[key][0] in order:
            return
        for dep in reversed(deps[key][1]):
            visit(dep)
        order.append(deps[key][0])

    for name in names:
        visit(name)
    return order


def plain_module_path(path: str) -> str:
    """Where a (possibly compressed) module goes in the archive: always a plain .ko, so
    busybox's modprobe needs no decompressor."""
    for suffix in (".xz", ".zst", ".gz"):
        if path.endswith(".ko" + suffix):
            return path.removesuffix(suffix)
    return path


def plain_bytes(source: Path) -> bytes:
    data = source.read_bytes()
    if source.suffix == ".xz":
        return lzma.decompress(data)
    if source.suffix == ".gz":
        return gzip.decompress(data)
    if source.suffix == ".zst":
        proc = subprocess.run(["zstd", "-dc", str(source)], capture_output=True, check=False)
        if proc.returncode != 0:
            raise XenlabError(f"zstd could not decompress {source}: {proc.stderr.decode(errors='replace')}")
        return proc.stdout
    return data


def closure_modules_dep(modules_dep: str, wanted: list[str]) -> str:
    """modules.dep restricted to the archive's modules, paths made plain."""
    keep = set(wanted)
    lines = []
    for line in modules_dep.splitlines():
        path, _, requires = line.partition(":")
        if path in keep:
            deps = " ".join(plain_module_path(p) for p in requires.split())
            lines.append(f"{plain_module_path(path)}:{' ' + deps if deps else ''}")
    return "\n".join(lines) + "\n"


def cpio_newc(root: Path) -> bytes:
    """The tree at `root` as a newc cpio archive, every file owned by root."""
    names = sorted(str(p.relative_to(root)) for p in root.rglob("*"))
    proc = subprocess.run(["cpio", "--quiet", "-o", "-H", "newc", "-R", "0:0"], cwd=root,
                          input="\n".join(names).encode(), capture_output=True, check=False)
    if proc.returncode != 0:
        raise XenlabError(f"cpio failed: {proc.stderr.decode(errors='replace')}")
    return proc.stdout


def build_boot_initrd(moddir: Path, modules: list[str], target: Path, busybox: Path = BUSYBOX) -> list[str]:
    """Write the gzip'd initramfs to `target`: busybox, /init, `modules` and their
    dependencies from `moddir` (a kernel's /usr/lib/modules/VERSION). Returns the module files."""
    dep_file = moddir / "modules.dep"
    if not dep_file.exists():
        raise XenlabError(f"no {dep_file}: the image's kernel has no module index")
    modules_dep = dep_file.read_text()
    builtin_file = moddir / "modules.builtin"
    builtin = {module_key(line) for line in builtin_file.read_text().split()} if builtin_file.exists() else set()
    modules = [m for m in modules if m.replace("_", "-") not in builtin]  # Debian 13's kernel has virtio_pci built in
    wanted = module_closure(modules_dep, modules)
    with tempfile.TemporaryDirectory(prefix="xenlab-boot-initrd-") as work:
        root = Path(work)
        for d in ("bin", "conf", "dev", "proc", "sys", "root", "run", "tmp"):
            (root / d).mkdir()
        (root / "sbin").symlink_to("bin")
        (root / "lib").symlink_to("usr/lib")
        shutil.copy(static_busybox(busybox), root / "bin/busybox")
        for applet in APPLETS:
            (root / "bin" / applet).symlink_to("busybox")
        shutil.copy(FILES_DIR / "boot-init.sh", root / "init")
        (root / "init").chmod(0o755)
        kernel_dir = root / "usr/lib/modules" / moddir.name
        for rel in wanted:
            dest = kernel_dir / plain_module_path(rel)
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(plain_bytes(moddir / rel))
        (kernel_dir / "modules.dep").write_text(closure_modules_dep(modules_dep, wanted))
        (root / "conf/modules").write_text("\n".join(modules) + "\n")
        target.write_bytes(gzip.compress(cpio_newc(root), compresslevel=6))
    return wanted
