"""The lab file's "your own Xen" sections: `xen:` (a hypervisor build, tools or .debs, command
lines, dom0's mode, kernel and modules; at lab level and per host), `packages:` and
`provision:`, as typed models, and the checks of the files they name.

A user's files are hostile input: each is checked for what it must be (a 32-bit multiboot
Xen ELF or its gzip, a bzImage, a Debian archive, a directory) from its first bytes only,
before anything starts. Options xenlab itself sets on the Xen and dom0 command lines (the
consoles, dom0's memory and vCPUs, its identity) are refused in `cmdline`: a lab works
only with xenlab's, and the user's are appended after them.
"""

from __future__ import annotations

import gzip
import hashlib
import re
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator

from .validation import StrictModel

PATH_FIELD = {"min_length": 1, "max_length": 400}
# Xen options xenlab sets (lab/qemu.py xen_cmdline): the serial console it reads, dom0's
# memory and vCPUs (the lab file's dom0_memory_mib, vcpus) and dom0's mode (dom0.mode).
XEN_OWNED = ("console", "com1", "com2", "dom0_mem", "dom0_max_vcpus", "dom0", "noreboot")
# dom0 kernel options xenlab sets (lab/qemu.py dom0_cmdline): its root, console and identity.
DOM0_OWNED = ("root", "console", "net.ifnames", "systemd.machine_id", "systemd.hostname", "init")
CMDLINE_PATTERN = r"^[A-Za-z0-9_.,:=+/@%-]+( [A-Za-z0-9_.,:=+/@%-]+)*$"
PACKAGE_PATTERN = r"^[a-z0-9][a-z0-9+.-]{1,62}$"
DEST_PATTERN = r"^/[A-Za-z0-9_.+@-][A-Za-z0-9/_.+@-]{0,250}$"
FORBIDDEN_DESTS = ("/proc", "/sys", "/dev", "/run", "/tmp", "/boot")
MAX_USER_FILE = 256 << 20  # a hypervisor, a kernel, a .deb: none is near this
AR_MAGIC = b"!<arch>\n"
PVH_TCG_REASON = (
    "a Linux PVH dom0 does not boot nested under TCG (measured: Xen 4.17 with Linux 6.1 stops in "
    "acpi_tb_verify_checksum, every read of the firmware's ACPI tables emulated by Xen, over a length read as "
    "4 GiB; with acpi=off it waits for ever for its disk's interrupt; see docs/your-own-xen.md)")


class Dom0Spec(StrictModel):
    """dom0: how it runs (PV or PVH), its own kernel and modules, options after xenlab's."""

    mode: Literal["pv", "pvh"] = Field("pv", description="pv: Xen's classic dom0; pvh: dom0=pvh dom0-iommu=none "
                                       "(needs hardware virtualization: accel kvm, or a static lab)")
    cmdline: str = Field("", max_length=1000, description="kernel options appended to xenlab's (root, console, "
                         "identity are xenlab's)")
    kernel: str | None = Field(None, **PATH_FIELD, description="a bzImage (arch/x86/boot/bzImage)")
    modules: str | None = Field(None, **PATH_FIELD, description="the kernel's modules: an INSTALL_MOD_PATH "
                                "directory holding lib/modules/VERSION")

    @field_validator("cmdline")
    @classmethod
    def _dom0_options(cls, value: str) -> str:
        return _options(value, DOM0_OWNED, "dom0's")


class XenSpec(StrictModel):
    """A Xen under test: a hypervisor build (booted directly), tools (a DESTDIR tree or .debs),
    Xen's options after xenlab's, and dom0. A host's own `xen:` overrides the lab's, key by key."""

    hypervisor: str | None = Field(None, **PATH_FIELD, description="xen/xen.gz or xen/xen (the 32-bit multiboot "
                                   "image, not xen-syms)")
    tools: str | None = Field(None, **PATH_FIELD, description="a tools install tree (make install-tools "
                              "DESTDIR=..., or dist/install), written over the image")
    debs: list[str] | None = Field(None, max_length=200, description=".deb files installed over the image "
                                   "(their files and dpkg records; maintainer scripts are not run)")
    cmdline: str = Field("", max_length=1000, description="Xen options appended to xenlab's (console, dom0 memory "
                         "and vCPUs, dom0 mode are xenlab's)")
    dom0: Dom0Spec | None = None

    @field_validator("cmdline")
    @classmethod
    def _xen_options(cls, value: str) -> str:
        return _options(value, XEN_OWNED, "Xen's")

    @field_validator("debs")
    @classmethod
    def _some_debs(cls, value: list[str] | None) -> list[str] | None:
        if value is not None:
            if not value:
                raise ValueError("an empty list installs nothing: name .deb files or leave debs out")
            for item in value:
                if not 1 <= len(item) <= 400:
                    raise ValueError("a .deb path is 1 to 400 characters")
        return value


class ProvisionSpec(StrictModel):
    """Files put into every host's image layer, and commands its hosts run once, before the toolstack starts."""

    files: dict[str, str] = Field(default_factory=dict, max_length=100,
                                  description="a local file (relative to the lab file) -> its absolute path on the host")
    run: list[str] = Field(default_factory=list, max_length=50,
                           description="shell commands run once by each host at its first boot, before xl's services")

    @field_validator("files")
    @classmethod
    def _destinations(cls, value: dict[str, str]) -> dict[str, str]:
        for source, dest in value.items():
            if not 1 <= len(source) <= 400:
                raise ValueError("a provisioned file's local path is 1 to 400 characters")
            if not re.fullmatch(DEST_PATTERN, dest) or any(p in ("", ".", "..") for p in dest.split("/")[1:]):
                raise ValueError(f"{dest!r} is not a plain absolute path on the host (letters, digits, / _ . + @ -)")
            if any(dest == d or dest.startswith(d + "/") for d in FORBIDDEN_DESTS):
                raise ValueError(f"{dest!r} is under {', '.join(FORBIDDEN_DESTS)}: those are not in the image layer")
        return value

    @field_validator("run")
    @classmethod
    def _commands(cls, value: list[str]) -> list[str]:
        for command in value:
            if not command.strip() or len(command) > 2000 or "\n" in command or "\0" in command:
                raise ValueError("a command is one non-empty line of at most 2000 characters")
        return value


def _options(value: str, owned: tuple[str, ...], whose: str) -> str:
    if not value:
        return value
    if not re.fullmatch(CMDLINE_PATTERN, value):
        raise ValueError(f"{value!r}: options separated by single spaces, without quotes, backslashes or "
                         "other characters a boot loader would read differently")
    for option in value.split(" "):
        key = option.split("=", 1)[0]
        if key in owned:
            raise ValueError(f"{key}= is set by xenlab on {whose} command line ({', '.join(owned)} are xenlab's)")
    return value


def merged_xen(lab: XenSpec | None, host: XenSpec | None) -> XenSpec | None:
    """A host's Xen: the lab's `xen:` with the host's own keys over it (dom0 key by key too)."""
    if host is None:
        return lab
    if lab is None:
        return host
    data = lab.model_dump(exclude_unset=True)
    own = host.model_dump(exclude_unset=True)
    dom0 = {**data.get("dom0", {}), **own.pop("dom0", {})}
    data.update(own)
    if dom0:
        data["dom0"] = dom0
    return XenSpec.model_validate(data)


def dom0_mode(xen: XenSpec | None) -> str:
    return xen.dom0.mode if xen is not None and xen.dom0 is not None else "pv"


# -- the files the sections name ----------------------------------------------------------
def resolve(path: str, base: Path) -> Path:
    expanded = Path(path).expanduser()
    return expanded if expanded.is_absolute() else base / expanded


def _head(path: Path, size: int = 4096) -> bytes:
    with open(path, "rb") as f:
        return f.read(size)


def hypervisor_problem(path: Path) -> str | None:
    """Why `path` is not a Xen QEMU can boot with -kernel (None: it is): a 32-bit ELF, or its gzip."""
    head = _head(path, 64)
    if head[:2] == b"\x1f\x8b":
        try:
            head = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(_head(path, 65536), 64)
        except zlib.error as exc:
            return f"is not a readable gzip file ({exc})"
    if head[:4] != b"\x7fELF":
        return "is neither an ELF file nor a gzip'd one: give xen/xen.gz or xen/xen from a Xen build"
    if head[4] != 1:
        return ("is a 64-bit ELF (xen-syms?): QEMU boots the 32-bit multiboot image, xen/xen or xen/xen.gz")
    return None


def kernel_problem(path: Path) -> str | None:
    head = _head(path, 0x210)
    if len(head) < 0x206 or head[0x202:0x206] != b"HdrS":
        return "is not an x86 bzImage (no HdrS header): give arch/x86/boot/bzImage"
    return None


def deb_problem(path: Path) -> str | None:
    """A Debian binary package is an ar archive whose first member is debian-binary."""
    head = _head(path, 8 + 60)
    if head[:8] != AR_MAGIC:
        return "is not a Debian package (no ar archive magic)"
    if head[8:24].rstrip(b" ").rstrip(b"/") != b"debian-binary":
        return "is an ar archive but not a Debian package (its first member is not debian-binary)"
    return None


def module_versions(directory: Path) -> list[str]:
    """Kernel versions an INSTALL_MOD_PATH tree holds (lib/modules/VERSION/modules.dep)."""
    roots = [directory / "lib/modules", directory / "usr/lib/modules"]
    return sorted({d.name for root in roots if root.is_dir() for d in root.iterdir() if (d / "modules.dep").is_file()})


def file_problems(xen: XenSpec, loc: tuple[Any, ...], base: Path) -> list[tuple[tuple[Any, ...], str]]:
    """The files one `xen:` section names that are missing or not what they must be."""
    problems: list[tuple[tuple[Any, ...], str]] = []
    where = ".".join(map(str, loc))

    def a_file(key: tuple[Any, ...], name: str, check) -> None:
        path = resolve(name, base)
        label = f"{where}.{'.'.join(map(str, key))}"
        if not path.exists():
            problems.append((loc + key, f"{label}: {name} does not exist (relative paths are read from {base})"))
        elif not path.is_file():
            problems.append((loc + key, f"{label}: {name} is a directory, a file is needed here"))
        elif path.stat().st_size > MAX_USER_FILE:
            problems.append((loc + key, f"{label}: {name} is larger than {MAX_USER_FILE >> 20} MiB"))
        elif (why := check(path)) is not None:
            problems.append((loc + key, f"{label}: {name} {why}"))

    def a_directory(key: tuple[Any, ...], name: str) -> Path | None:
        path = resolve(name, base)
        label = f"{where}.{'.'.join(map(str, key))}"
        if not path.exists():
            problems.append((loc + key, f"{label}: {name} does not exist (relative paths are read from {base})"))
        elif not path.is_dir():
            problems.append((loc + key, f"{label}: {name} is a file, a directory is needed here"))
        else:
            return path
        return None

    if xen.hypervisor is not None:
        a_file(("hypervisor",), xen.hypervisor, hypervisor_problem)
    if xen.tools is not None:
        tree = a_directory(("tools",), xen.tools)
        if tree is not None and not any((tree / d).is_dir() for d in ("usr", "etc", "lib", "var", "boot")):
            problems.append((loc + ("tools",), (f"{where}.tools: {xen.tools} holds no usr/, etc/, lib/, var/ or boot/: "
                             "give the DESTDIR of `make install-tools` (or dist/install)")))
    for index, deb in enumerate(xen.debs or []):
        a_file(("debs", index), deb, deb_problem)
    if xen.dom0 is not None:
        if xen.dom0.kernel is not None:
            a_file(("dom0", "kernel"), xen.dom0.kernel, kernel_problem)
        if xen.dom0.modules is not None:
            tree = a_directory(("dom0", "modules"), xen.dom0.modules)
            if tree is not None:
                versions = module_versions(tree)
                if len(versions) != 1:
                    problems.append((loc + ("dom0", "modules"), (
                        f"{where}.dom0.modules: {xen.dom0.modules} holds {len(versions)} kernel versions "
                        f"({', '.join(versions) or 'no lib/modules/VERSION/modules.dep'}): give the INSTALL_MOD_PATH "
                        "of one `make modules_install`")))
            if xen.dom0.kernel is None:
                problems.append((loc + ("dom0", "modules"), (f"{where}.dom0.modules: modules without `kernel:` would "
                                 "not fit the image's own kernel: give dom0.kernel too")))
    return problems


def provision_problems(provision: ProvisionSpec, base: Path) -> list[tuple[tuple[Any, ...], str]]:
    problems: list[tuple[tuple[Any, ...], str]] = []
    for source in provision.files:
        path = resolve(source, base)
        if not path.is_file():
            what = "is a directory, a file is needed here" if path.is_dir() else "does not exist"
            problems.append((("provision", "files", source), (f"provision.files: {source} {what} "
                             f"(relative paths are read from {base})")))
        elif path.stat().st_size > MAX_USER_FILE:
            problems.append((("provision", "files", source), f"provision.files: {source} is too large"))
    return problems


# -- digests ----------------------------------------------------------------------------
_DIGESTS: dict[tuple[str, int, int], str] = {}


def file_digest(path: Path) -> str:
    """sha256 of a file (remembered by path, size and mtime within this process)."""
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns)
    if key not in _DIGESTS:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
        _DIGESTS[key] = h.hexdigest()
    return _DIGESTS[key]


def tree_digest(root: Path) -> str:
    """sha256 over a directory tree: every path, its kind and mode, a file's content, a link's target."""
    h = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        st = path.lstat()
        h.update(f"{rel}\0{st.st_mode:o}\0".encode())
        if path.is_symlink():
            h.update(str(path.readlink()).encode())
        elif path.is_file():
            h.update(file_digest(path).encode())
    return h.hexdigest()


@dataclass(frozen=True)
class UserFile:
    """One file or tree a host's lab file gave: what it is for, where it is, its digest."""

    role: str  # hypervisor, tools, deb, dom0-kernel, dom0-modules, provision
    path: Path
    digest: str

    def as_dict(self) -> dict[str, str]:
        return {"role": self.role, "path": str(self.path), "sha256": self.digest}


def user_files(xen: XenSpec | None, provision: ProvisionSpec | None, base: Path) -> list[UserFile]:
    """Every user file a host boots or is made from, with its digest (in a stable order)."""
    found: list[UserFile] = []
    if xen is not None:
        if xen.hypervisor:
            path = resolve(xen.hypervisor, base)
            found.append(UserFile("hypervisor", path, file_digest(path)))
        if xen.tools:
            path = resolve(xen.tools, base)
            found.append(UserFile("tools", path, tree_digest(path)))
        for deb in xen.debs or []:
            path = resolve(deb, base)
            found.append(UserFile("deb", path, file_digest(path)))
        if xen.dom0 is not None and xen.dom0.kernel:
            path = resolve(xen.dom0.kernel, base)
            found.append(UserFile("dom0-kernel", path, file_digest(path)))
        if xen.dom0 is not None and xen.dom0.modules:
            path = resolve(xen.dom0.modules, base)
            found.append(UserFile("dom0-modules", path, tree_digest(path)))
    if provision is not None:
        for source in sorted(provision.files):
            path = resolve(source, base)
            found.append(UserFile("provision", path, file_digest(path)))
    return found


def gunzip_if_needed(data: bytes) -> bytes:
    """A hypervisor as QEMU's -kernel loads it: xen.gz gunzipped, an ELF as it is."""
    return gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data


# -- checks of a whole lab file (LabSpec: typed Any here, spec.py imports this module) ---
def _sections(lab: Any) -> list[tuple[tuple[Any, ...], XenSpec]]:
    found = [(("xen",), lab.xen)] if lab.xen is not None else []
    return found + [(("hosts", n, "xen"), h.xen) for n, h in lab.hosts.items() if h.xen is not None]


def lab_problems(lab: Any) -> list[tuple[tuple[Any, ...], str]]:
    """What the sections ask for that this kind of lab cannot give (no file is read)."""
    problems: list[tuple[tuple[Any, ...], str]] = []
    if lab.backend != "qemu":
        why = ("xenlab does not boot the hosts of a static lab: it reports what they run"
               if lab.backend == "static" else "a sim lab has no Xen")
        for loc, _ in _sections(lab):
            problems.append((loc, f"{'.'.join(map(str, loc))}: {why}"))
        for key in ("packages", "provision"):
            if key in lab.model_fields_set:
                problems.append(((key,), f"{key}: {why}"))
        return problems
    for name in lab.hosts:
        xen = lab.xen_of(name)
        if xen is None:
            continue
        loc = ("hosts", name, "xen") if lab.hosts[name].xen is not None else ("xen",)
        if dom0_mode(xen) == "pvh" and lab.accel != "kvm":
            problems.append((loc + ("dom0", "mode"), (
                f"{name}: dom0 mode pvh needs `accel: kvm` (a CPU with vmx or svm); {PVH_TCG_REASON}. "
                "Use mode pv here, or a KVM machine")))
        firmware = lab.hardware_of(name).firmware
        booted = [k for k in ("hypervisor",) if getattr(xen, k)] + (
            ["dom0.kernel"] if xen.dom0 is not None and xen.dom0.kernel else [])
        if firmware != "direct" and booted:
            problems.append((loc, (f"{name}: {', '.join(booted)} is booted directly by QEMU; hardware firmware "
                                   f"{firmware} boots the image's own Xen from its disk: use firmware direct")))
    return problems


def lab_file_problems(lab: Any, base: Path) -> list[tuple[tuple[Any, ...], str]]:
    """The user's files of a qemu lab that are missing or not what they must be."""
    if lab.backend != "qemu":
        return []
    problems: list[tuple[tuple[Any, ...], str]] = []
    for loc, xen in _sections(lab):
        problems += file_problems(xen, loc, base)
    if lab.provision is not None:
        problems += provision_problems(lab.provision, base)
    return problems
