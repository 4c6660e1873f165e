"""A host's own layer over a cached image: the user's Xen (hypervisor, tools, .debs, dom0 kernel
and modules) and provisioning, made without mounts as the hardware variants are (variant.py).

Two parts, each cached by the digests of what went into it, next to the image it rests on
(`IMAGE-DIGEST+user-LAYERDIGEST`, pruned with its image, and only the newest few kept):
- the boot files QEMU loads directly: xen.elf (the user's hypervisor gunzipped, or the one a
  .deb or tools tree brings in /boot), dom0's kernel and an initrd of its modules. A new
  hypervisor makes only this part: a copy and a gunzip, no disk work.
- the disk, only when files go into the root file system (tools tree, .debs, dom0 modules,
  provisioned files): the image's root file system read out with qemu-img, the files written
  in with debugfs (owned by root), each .deb's dpkg record replaced (so `dpkg-query` reports
  the user's version; maintainer scripts are not run: there is no chroot here), and a
  first-boot unit that runs ldconfig and the lab file's `provision.run` before the toolstack.
`packages:` is a recipe of its own (the image's recipe with more packages, built as images
are, `IMAGE-DIGEST+pkgs-DIGEST`): apt resolves their dependencies and runs their scripts.
"""

from __future__ import annotations

import fcntl
import gzip
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import XenlabError
from ..waiting import Progress, quiet
from .build import INITRAMFS_MODULES, build_image
from .cache import BuiltImage, ImageCache, publish
from .initrd import build_boot_initrd

LAYER_FORMAT = "1"  # bump when this builder makes something else from the same input
KEEP_LAYERS = 6  # user layers kept per image (each edit-build-boot makes one)
PROVISION_UNIT = "xenlab-provision.service"
MERGED = {"bin": "usr/bin", "sbin": "usr/sbin", "lib": "usr/lib", "lib64": "usr/lib64"}


@dataclass(frozen=True)
class LayerRequest:
    """What one host's layer is made of (paths already checked by xen_spec)."""

    hypervisor: Path | None = None
    tools: Path | None = None
    debs: tuple[Path, ...] = ()
    kernel: Path | None = None
    modules: Path | None = None  # an INSTALL_MOD_PATH tree
    files: tuple[tuple[Path, str], ...] = ()  # provisioned: local file -> path on the host
    run: tuple[str, ...] = ()
    digests: tuple[tuple[str, str], ...] = field(default=())  # (role, sha256) of every user file

    @property
    def needs_disk(self) -> bool:
        return bool(self.tools or self.debs or self.modules or self.files or self.run)

    def digest(self, base: BuiltImage) -> str:
        h = hashlib.sha256()
        h.update(json.dumps({"format": LAYER_FORMAT, "base": [base.name, base.digest, base.built_at],
                             "files": list(self.digests), "dests": [d for _, d in self.files],
                             "run": list(self.run), "builder": hashlib.sha256(Path(__file__).read_bytes()).hexdigest()},
                            sort_keys=True).encode())
        return h.hexdigest()[:16]


def layer_path(base: BuiltImage, request: LayerRequest) -> Path:
    return base.directory.with_name(f"{base.directory.name}+user-{request.digest(base)}")


def ensure_user_layer(base: BuiltImage, request: LayerRequest, progress: Progress = quiet,
                      subject: str = "") -> BuiltImage:
    """The cached layer for `request` over `base` (built first if needed), as an image to boot."""
    final = layer_path(base, request)
    subject = subject or base.name
    if not (final / "manifest.json").exists():
        with open(final.with_name(f".{final.name}.lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not (final / "manifest.json").exists():
                _build(base, request, final, progress, subject)
                prune_layers(base)
    else:
        progress(subject, f"user layer {final.name.split('+user-')[1]} cached")
    data = json.loads((final / "manifest.json").read_text())
    os.utime(final / "manifest.json")  # last used: prune_layers keeps the newest
    return BuiltImage(f"{base.name}+user", data["digest"], final, "xen", data["built_at"], data["build_seconds"])


def prune_layers(base: BuiltImage, keep: int = KEEP_LAYERS) -> list[Path]:
    """All but the `keep` most recently used user layers of `base` go."""
    layers = sorted(base.directory.parent.glob(f"{base.directory.name}+user-*"),
                    key=lambda p: (p / "manifest.json").stat().st_mtime if (p / "manifest.json").exists() else 0,
                    reverse=True)
    gone = [p for p in layers[keep:] if p.is_dir() and ".building-" not in p.name]
    for path in gone:
        shutil.rmtree(path, ignore_errors=True)
    return gone


def _build(base: BuiltImage, request: LayerRequest, final: Path, progress: Progress, subject: str) -> None:
    staging = final.with_name(final.name + f".building-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    started = time.monotonic()
    try:
        with tempfile.TemporaryDirectory(prefix="xenlab-userlayer-", dir=final.parent) as work:
            builder = _LayerBuilder(base, request, Path(work), staging, progress, subject)
            builder.boot_files()
            if request.needs_disk:
                builder.disk()
            else:
                (staging / "disk.qcow2").symlink_to(base.disk)
        seconds = round(time.monotonic() - started, 1)
        progress(subject, f"user layer made in {seconds}s")
        publish(staging, final, {"image": base.name, "image_digest": base.digest, "digest": request.digest(base),
                                 "files": [{"role": r, "sha256": d} for r, d in request.digests],
                                 "disk": request.needs_disk, "built_at": time.time(), "build_seconds": seconds})
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


class _LayerBuilder:
    def __init__(self, base: BuiltImage, request: LayerRequest, work: Path, out: Path, progress: Progress,
                 subject: str):
        self.base, self.request, self.work, self.out = base, request, work, out
        self.progress, self.subject = progress, subject
        self.log = out / "build.log"
        self.tree = work / "tree"  # what goes into the root file system

    def say(self, message: str) -> None:
        self.progress(self.subject, message)

    def run(self, argv: list[str], what: str, **kwargs) -> str:
        proc = subprocess.run(argv, capture_output=True, text=True, check=False, **kwargs)
        with open(self.log, "a") as log:
            log.write(f"$ {' '.join(argv)}\n{proc.stdout[-4000:]}{proc.stderr[-4000:]}")
        if proc.returncode != 0:
            raise XenlabError(f"{what} failed (exit {proc.returncode}): {proc.stderr.strip()[-800:]}")
        return proc.stdout

    # -- what QEMU loads --------------------------------------------------------------
    def boot_files(self) -> None:
        request, out = self.request, self.out
        self.tree.mkdir()
        if request.tools:
            self.say(f"tools tree {request.tools}")
            shutil.copytree(request.tools, self.tree, symlinks=True, dirs_exist_ok=True)
        for deb in request.debs:
            self.say(f"unpacking {deb.name}")
            self.run(["dpkg-deb", "-x", str(deb), str(self.tree)], f"dpkg-deb -x {deb}")
        if request.hypervisor:
            self.say(f"hypervisor {request.hypervisor}")
            (out / "xen.elf").write_bytes(_gunzip(request.hypervisor.read_bytes()))
            (out / "xen-origin").write_text(f"user file {request.hypervisor}\n")
        elif brought := sorted((self.tree / "boot").glob("xen-*.gz")) if (self.tree / "boot").is_dir() else []:
            self.say(f"hypervisor {brought[-1].name} from the tools or .debs")
            (out / "xen.elf").write_bytes(_gunzip(brought[-1].read_bytes()))
            (out / "xen-origin").write_text(f"/boot/{brought[-1].name} of the user's tools or .debs\n")
        else:
            (out / "xen.elf").symlink_to(self.base.file("xen.elf"))
            (out / "xen-origin").write_text(f"image {self.base.name}\n")
        if request.kernel:
            shutil.copyfile(request.kernel, out / "vmlinuz")
            version = self._user_modules() if request.modules else ""
            if version:
                moddir = self.tree / "usr/lib/modules" / version
                present = (moddir / "modules.dep").read_text()
                wanted = [m for m in INITRAMFS_MODULES if f"/{m.replace('_', '-')}.ko" in present.replace("_", "-")]
                build_boot_initrd(moddir, wanted, out / "initrd.img")
            else:  # drivers built in: the image's initrd finds no modules of this kernel and goes on
                (out / "initrd.img").symlink_to(self.base.file("initrd.img"))
            (out / "kernel-version").write_text((version or "user kernel") + "\n")
            (out / "kernel-origin").write_text(f"user file {request.kernel}\n")
        else:
            for name in ("vmlinuz", "initrd.img", "kernel-version"):
                (out / name).symlink_to(self.base.file(name))
            (out / "kernel-origin").write_text(f"image {self.base.name}\n")

    def _user_modules(self) -> str:
        assert self.request.modules is not None
        for root in ("lib/modules", "usr/lib/modules"):
            source = self.request.modules / root
            if source.is_dir():
                for version in source.iterdir():
                    if (version / "modules.dep").is_file():
                        shutil.copytree(version, self.tree / "usr/lib/modules" / version.name, symlinks=True,
                                        dirs_exist_ok=True)
                        return version.name
        raise XenlabError(f"{self.request.modules}: no lib/modules/VERSION/modules.dep")

    # -- the root file system ---------------------------------------------------------
    def disk(self) -> None:
        request = self.request
        for source, dest in request.files:
            target = self.tree / dest.lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)
        self._provision_unit()
        _merge_usr(self.tree)
        raw = self.work / "root.ext4"
        self.say("reading the image's root file system")
        self.run(["qemu-img", "convert", "-f", "qcow2", "-O", "raw", str(self.base.disk), str(raw)], "qemu-img convert")
        status = self._dpkg_status(raw) if request.debs else None
        self.say(f"writing {sum(1 for _ in self.tree.rglob('*'))} files into it with debugfs")
        script = self.work / "write.debugfs"
        script.write_text(debugfs_script(self.tree, status))
        self.run(["debugfs", "-w", "-f", str(script), str(raw)], "debugfs writing the layer")
        self._check(raw)
        self.say("converting the layer's disk to qcow2")
        self.run(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(raw), str(self.out / "disk.qcow2")],
                 "qemu-img convert")

    def _provision_unit(self) -> None:
        script = self.tree / "usr/local/sbin/xenlab-provision"
        script.parent.mkdir(parents=True, exist_ok=True)
        lines = ["#!/bin/sh", "# xenlab: the lab file's provision.run (see xenlab/images/userlayer.py)", "set -e",
                 "ldconfig"] + list(self.request.run) + ["mkdir -p /var/lib/xenlab", "touch /var/lib/xenlab/provisioned"]
        script.write_text("\n".join(lines) + "\n")
        script.chmod(0o755)
        units = self.tree / "etc/systemd/system"
        (units / "multi-user.target.wants").mkdir(parents=True, exist_ok=True)
        (units / PROVISION_UNIT).write_text(
            "[Unit]\nDescription=xenlab: provisioning of the lab file, once\n"
            "ConditionPathExists=!/var/lib/xenlab/provisioned\n"
            "Before=xencommons.service xen-init-dom0.service xenstored.service ssh.service\n"
            "After=local-fs.target\n\n[Service]\nType=oneshot\n"
            "ExecStart=/bin/sh -c '/usr/local/sbin/xenlab-provision > /var/log/xenlab-provision.log 2>&1'\n"
            "RemainAfterExit=yes\n\n[Install]\nWantedBy=multi-user.target\n")
        (units / "multi-user.target.wants" / PROVISION_UNIT).symlink_to(f"/etc/systemd/system/{PROVISION_UNIT}")

    def _dpkg_status(self, raw: Path) -> Path:
        """dpkg's status file with each .deb's record in place of the image's (Status: installed)."""
        current = self.work / "status"
        self.run(["debugfs", "-R", f'dump /var/lib/dpkg/status "{current}"', str(raw)], "reading dpkg's status")
        stanzas = [s for s in current.read_text().split("\n\n") if s.strip()]
        for deb in self.request.debs:
            control = self.run(["dpkg-deb", "-f", str(deb)], f"dpkg-deb -f {deb}").strip()
            fields = dict(line.split(": ", 1) for line in control.splitlines() if ": " in line and line[0] != " ")
            package = fields.get("Package", "")
            stanzas = [s for s in stanzas if not s.startswith(f"Package: {package}\n")]
            lines = control.splitlines()
            stanzas.append("\n".join([lines[0], "Status: install ok installed", *lines[1:]]))
        target = self.tree / "var/lib/dpkg/status"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text("\n\n".join(stanzas) + "\n")
        return target

    def _check(self, raw: Path) -> None:
        """debugfs does not fail when a request does: read a few written paths back."""
        written = [p for p in sorted(self.tree.rglob("*")) if p.is_file() and not p.is_symlink()][:20]
        for path in written:
            rel = "/" + str(path.relative_to(self.tree))
            listing = self.run(["debugfs", "-R", f'stat "{rel}"', str(raw)], f"checking {rel}")
            if f"Size: {path.stat().st_size}" not in listing:
                raise XenlabError(f"the layer lacks {rel} after debugfs wrote it (see {self.log})")


def _gunzip(data: bytes) -> bytes:
    return gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data


def _merge_usr(tree: Path) -> None:
    """The images are merged-/usr (/lib is a link to usr/lib): a tree's lib/, bin/, sbin/ go under usr/."""
    for top, under in MERGED.items():
        source = tree / top
        if source.is_dir() and not source.is_symlink():
            target = tree / under
            target.mkdir(parents=True, exist_ok=True)
            shutil.copytree(source, target, symlinks=True, dirs_exist_ok=True)
            shutil.rmtree(source)


def debugfs_script(tree: Path, status: Path | None) -> str:
    """debugfs requests that put `tree` into a root file system: missing directories made, files
    and links replaced, owned by root, files with the tree's modes."""
    lines: list[str] = []
    for path in sorted(tree.rglob("*")):
        rel = "/" + str(path.relative_to(tree))
        if any(c in rel for c in '"\n'):
            raise XenlabError(f"cannot write {rel!r} into the image (a quote or newline in its name)")
        mode = path.lstat().st_mode
        if path.is_symlink():
            lines += [f'rm "{rel}"', f'symlink "{rel}" "{os.readlink(path)}"']
        elif path.is_dir():
            lines.append(f'mkdir "{rel}"')  # new: root's, 0755; an existing one keeps its owner and mode
            continue
        elif path.is_file():
            lines += [f'rm "{rel}"', f'write "{path}" "{rel}"', f'sif "{rel}" mode 0{mode:o}']
        else:
            continue
        lines += [f'sif "{rel}" uid 0', f'sif "{rel}" gid 0']
    del status  # written like any other file of the tree (var/lib/dpkg/status)
    return "\n".join(lines) + "\n"


def ensure_packages_image(cache: ImageCache, name: str, packages: tuple[str, ...],
                          progress: Progress = quiet) -> BuiltImage:
    """Image `name` with more Debian packages: its recipe with them added, built as images are
    (apt resolves, maintainer scripts run), cached next to the image as `+pkgs-DIGEST`."""
    base = cache.ensure(name, progress)
    recipe = cache.recipe(name)
    derived = recipe.model_copy(update={"packages": list(recipe.packages) + [p for p in packages
                                                                              if p not in recipe.packages]})
    digest = derived.digest()
    final = base.directory.with_name(f"{base.directory.name}+pkgs-{digest}")
    if not (final / "manifest.json").exists():
        with open(final.with_name(f".{final.name}.lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not (final / "manifest.json").exists():
                staging = final.with_name(final.name + f".building-{os.getpid()}")
                shutil.rmtree(staging, ignore_errors=True)
                staging.mkdir(parents=True)
                started = time.monotonic()
                try:
                    progress(name, f"image layer with packages {', '.join(packages)}")
                    build_image(derived, staging, None, progress)
                    publish(staging, final, {"name": name, "digest": digest, "boot": recipe.boot,
                                             "packages": list(packages), "built_at": time.time(),
                                             "build_seconds": round(time.monotonic() - started, 1)})
                except BaseException:
                    shutil.rmtree(staging, ignore_errors=True)
                    raise
    data = json.loads((final / "manifest.json").read_text())
    return BuiltImage(f"{name}+pkgs", digest, final, recipe.boot, data["built_at"], data["build_seconds"])
