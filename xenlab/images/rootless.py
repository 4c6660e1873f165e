"""Building golden images without root, and seeing a build go by.

An ordinary user builds a Debian tree with `mmdebstrap --mode=unshare`: dpkg runs as root
of a user namespace whose ids are the user's subordinate ranges (/etc/subuid, /etc/subgid,
mapped by newuidmap/newgidmap), and the tree comes out as a tarball that keeps owners and
device nodes. The customisation (initramfs included: initrd.py needs no chroot) and
`mkfs.ext4 -d` run in one `fakeroot` session
over the extracted tarball, so the file system records root:root and /dev's nodes. File
capabilities and ACLs (ping's cap_net_raw, the journal's ACLs) are copied from the
tarball into the file system with `debugfs` (fakeroot 1.31 mangles the mode of a file
whose xattrs it fakes). Root keeps today's road: debootstrap and chroot.

Which road a build takes is `choose_build_mode`; `xenlab doctor` shows `build_checks`.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import stat
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ..errors import XenlabError
from ..waiting import Progress

MERGED_USR_HOOKS = Path("/usr/share/mmdebstrap/hooks/merged-usr")
MIN_SUBIDS = 65536  # a Debian system's packages use ids below 65536
MODE_ENV = "XENLAB_IMAGE_BUILD"  # auto (default), unshare or root


# -- can this user build images, and how ------------------------------------------------
@dataclass(frozen=True)
class Check:
    """One line of `xenlab doctor`: what, whether it is there, and what to do if not."""

    check: str
    ok: bool
    detail: str
    by_setup: bool = True  # ./setup.sh installs it (a package), or the detail says what to do

    def as_dict(self) -> dict:
        return {"check": self.check, "ok": self.ok, "detail": self.detail}


def userns_problem() -> str | None:
    """Why this user cannot make a user namespace with itself as root (None: it can)."""
    if not shutil.which("unshare"):
        return "unshare (util-linux) is not installed"
    try:
        proc = subprocess.run(["unshare", "--user", "--map-root-user", "true"], capture_output=True, text=True,
                              timeout=20, check=False)
    except subprocess.TimeoutExpired:
        return "unshare --user did not return in 20 s"
    if proc.returncode == 0:
        return None
    return proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"unshare --user exited {proc.returncode}"


def subid_count(text: str, user: str, uid: int) -> int:
    """How many subordinate ids /etc/subuid (or subgid) text gives `user` (by name or uid)."""
    total = 0
    for line in text.splitlines():
        parts = line.strip().split(":")
        if len(parts) != 3 or parts[0] not in (user, str(uid)):
            continue
        try:
            total += int(parts[2])
        except ValueError:
            continue
    return total


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def rootless_checks(
    user: str,
    uid: int,
    which: Callable[[str], str | None] = shutil.which,
    userns: Callable[[], str | None] = userns_problem,
    etc: Path = Path("/etc"),
    merged_usr: Path = MERGED_USR_HOOKS,
) -> list[Check]:
    """What an ordinary user needs to build images: the tools, user namespaces, id ranges."""
    checks = []
    for tool, package in (("mmdebstrap", "mmdebstrap"), ("newuidmap", "uidmap"), ("newgidmap", "uidmap"),
                          ("fakeroot", "fakeroot"), ("debugfs", "e2fsprogs")):
        path = which(tool)
        checks.append(Check(tool, bool(path), path or f"apt-get install {package}"))
    if checks[0].ok and not (merged_usr / "setup00.sh").exists():
        checks[0] = Check("mmdebstrap", False, f"{checks[0].detail} has no {merged_usr}: "
                          "install the mmdebstrap of Debian 12 (1.3.5) or later", by_setup=False)
    problem = userns()
    checks.append(Check(
        "user namespaces", problem is None,
        "yes" if problem is None else
        f"{problem}; allow unprivileged user namespaces (as root: sysctl -w user.max_user_namespaces=15000 "
        "kernel.unprivileged_userns_clone=1; on Ubuntu also kernel.apparmor_restrict_unprivileged_userns=0)",
        by_setup=False))
    for kind in ("subuid", "subgid"):
        count = subid_count(_read(etc / kind), user, uid)
        checks.append(Check(
            f"{kind} range", count >= MIN_SUBIDS,
            f"{count} ids for {user}" if count >= MIN_SUBIDS else
            f"{user} has {count} subordinate ids in /etc/{kind} (needs {MIN_SUBIDS}); as root: "
            f"usermod --add-sub{kind[3:]}s 100000-165535 {user} (pick a range no other user has)",
            by_setup=False))
    return checks


ROOT_TOOLS = {"root": (("mmdebstrap", "mmdebstrap"), ("fakeroot", "fakeroot"), ("debugfs", "e2fsprogs")),
              "debootstrap": (("debootstrap", "debootstrap"),)}


def root_checks(kind: str = "root", which: Callable[[str], str | None] = shutil.which) -> list[Check]:
    """The tools of root's road (`root`: mmdebstrap as root; `debootstrap`: the older one)."""
    return [Check(tool, bool(which(tool)), which(tool) or f"apt-get install {package}")
            for tool, package in ROOT_TOOLS[kind]]


@dataclass(frozen=True)
class BuildMode:
    """A road to an image. `unshare` and `root` are one pipeline (mmdebstrap to a tarball,
    the tree customised and made a disk image under fakeroot), in a user namespace or as
    root; `debootstrap` is root's older road (debootstrap and chroot), about twice as slow:
    both images of xen-pool2 built side by side took 190 s by debootstrap, 94 s by
    mmdebstrap as root (2026-12-03, a quiet 2-core machine; apt fetches in parallel where
    debootstrap fetches one package at a time)."""

    kind: Literal["unshare", "root", "debootstrap"]
    why: str  # said in the progress line that starts a build

    @property
    def mmdebstrap_mode(self) -> str:
        return "unshare" if self.kind == "unshare" else "root"


def choose_build_mode(euid: int, requested: str, rootless: Callable[[], list[Check]]) -> BuildMode:
    """unshare (mmdebstrap in a user namespace) for an ordinary user, root (mmdebstrap as
    root) for root; XENLAB_IMAGE_BUILD=unshare|root|debootstrap asks for one. Refuses clearly when the
    chosen road is closed."""
    requested = requested or "auto"
    if requested not in ("auto", "unshare", "root", "debootstrap"):
        raise XenlabError(f"{MODE_ENV}={requested!r}: use auto, unshare, root or debootstrap")
    if requested in ("root", "debootstrap") or (requested == "auto" and euid == 0):
        if euid != 0:
            raise XenlabError(f"{MODE_ENV}={requested}: building images as root needs root (this is uid {euid})")
        if requested == "debootstrap":
            return BuildMode("debootstrap", "as root: debootstrap and chroot")
        return BuildMode("root", "as root: mmdebstrap, the disk image under fakeroot")
    missing = [c for c in rootless() if not c.ok]
    if missing:
        lines = "\n".join(f"  {c.check}: {c.detail}" for c in missing)
        fallback = ("" if euid == 0 else
                    "\nOr, where user namespaces cannot be had, build the images as root once, into your cache: "
                    "sudo XENLAB_CACHE=\"$HOME/.cache/xenlab/images\" xenlab images build")
        raise XenlabError(f"cannot build images without root here; missing:\n{lines}{fallback}")
    return BuildMode("unshare", "without root: mmdebstrap in a user namespace, the disk image under fakeroot")


def build_mode() -> BuildMode:
    """The build mode of this process (its user, XENLAB_IMAGE_BUILD)."""
    uid = os.geteuid()
    return choose_build_mode(uid, os.environ.get(MODE_ENV, ""), lambda: rootless_checks(_user_name(uid), uid))


def build_checks() -> list[Check]:
    """`xenlab doctor`'s lines for image builds, for the road this user's builds take."""
    uid = os.geteuid()
    requested = os.environ.get(MODE_ENV, "") or "auto"
    if requested in ("root", "debootstrap") or (requested == "auto" and uid == 0):
        kind = "debootstrap" if requested == "debootstrap" else "root"
        road = "as root with debootstrap" if kind == "debootstrap" else "as root with mmdebstrap"
        return [*root_checks(kind), Check("image builds", uid == 0, road if uid == 0 else
                                          f"{MODE_ENV}={kind} needs root", by_setup=False)]
    checks = rootless_checks(_user_name(uid), uid)
    missing = [c for c in checks if not c.ok]
    summary = ("without root: mmdebstrap in a user namespace, the disk image under fakeroot" if not missing else
               f"not without root until {', '.join(c.check for c in missing)} (above); or as root: "
               "sudo XENLAB_CACHE=\"$HOME/.cache/xenlab/images\" xenlab images build")
    return [*checks, Check("image builds", not missing, summary, by_setup=all(c.by_setup for c in missing))]


def missing_advice(missing: list[str], not_by_setup: set[str]) -> str:
    """What `xenlab doctor` says under its table when something is missing."""
    manual = [m for m in missing if m in not_by_setup]
    if not manual:
        return "Everything missing is installed by ./setup.sh"
    packages = "./setup.sh installs the missing packages; " if len(manual) < len(missing) else ""
    return f"{packages}{', '.join(manual)}: not a package; the detail says what to do (as root)"


def _user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


# -- the command lines ----------------------------------------------------------------
# While packages install, the kernel's postinst and initramfs-tools' trigger each build an
# initramfs; with MODULES=most that took a minute each here under load. A conf.d file
# makes those small (MODULES=list, of the default empty list); none of them boots: the
# machine's initramfs is made by initrd.py when the tree is exported.
INTERIM_CONF = "etc/initramfs-tools/conf.d/xenlab-build"


def interim_initramfs_hook() -> str:
    """The essential hook (before the recipe's packages): interim initramfs builds are small."""
    return f'mkdir -p "$1/{Path(INTERIM_CONF).parent}" && echo MODULES=list > "$1/{INTERIM_CONF}"'


def mmdebstrap_argv(suite: str, packages: list[str], mirror: str, tarball: Path, mode: str = "unshare") -> list[str]:
    """mmdebstrap's command line: what `debootstrap --variant=minbase --include=...` makes,
    merged /usr set up the way debootstrap does it (usr-is-merged, not usrmerge and perl);
    `mode` unshare (a user namespace) or root."""
    argv = ["mmdebstrap", f"--mode={mode}", "--variant=minbase", "--format=tar", "--verbose",
            f"--hook-dir={MERGED_USR_HOOKS}"]
    if packages:
        argv.append("--include=" + ",".join(packages))
    argv += [f"--essential-hook={interim_initramfs_hook()}", suite, str(tarball), mirror]
    return argv


def debootstrap_argv(suite: str, packages: list[str], mirror: str, tree: Path) -> list[str]:
    argv = ["debootstrap", "--variant=minbase"]
    if packages:
        argv.append("--include=" + ",".join(packages))
    return argv + [suite, str(tree), mirror]


def fakeroot_stage_argv(tarball: Path, tree: Path, recipe_json: Path, out: Path, raw: Path) -> list[str]:
    return ["fakeroot", "--", sys.executable, "-m", "xenlab.images.rootless", "stage",
            str(tarball), str(tree), str(recipe_json), str(out), str(raw)]


# -- progress ---------------------------------------------------------------------------
class Throttle:
    """A Progress that passes a message on at most every `interval` seconds, unless it
    starts a new step (`step=True`), which always goes, after the last held-back one."""

    def __init__(self, progress: Progress, subject: str, interval: float = 2.0,
                 clock: Callable[[], float] = time.monotonic):
        self.progress, self.subject, self.interval, self.clock = progress, subject, interval, clock
        self.last = -1e9
        self.pending: str | None = None

    def __call__(self, message: str, step: bool = False) -> None:
        if step:
            self.flush()  # the last count of the step before
        now = self.clock()
        if step or now - self.last >= self.interval:
            self.progress(self.subject, message)
            self.last, self.pending = now, None
        else:
            self.pending = message

    def flush(self) -> None:
        """Say the last held-back message (the final count of a step)."""
        if self.pending is not None:
            self.progress(self.subject, self.pending)
            self.last, self.pending = self.clock(), None


_APT_GET = re.compile(r"^Get:\d+ \S+ \S+ \S+ (\S+) \S+ \S+ \[")  # Get:3 URL suite/comp arch NAME ARCH VERSION [size]
_APT_TOTAL = re.compile(r"^(\d+) upgraded, (\d+) newly installed")
_DPKG = re.compile(r"^(Unpacking|Setting up) (\S+?)(?::\w+)? \(")
_TRIGGERS = re.compile(r"^Processing triggers for (\S+?)(?::\w+)? \(")
_MMDEBSTRAP_STEPS = {
    "running apt-get update": "reading the mirror's package lists",
    "downloading packages with apt": "downloading the essential packages",
    "extracting archives": "extracting the essential packages",
    "installing essential packages": "installing the essential packages",
    "installing remaining packages inside the chroot": "installing the recipe's packages",
    "creating tarball": "packing the tree into a tarball",
}
_DEBOOTSTRAP = re.compile(r"^I: (Retrieving|Unpacking|Extracting|Configuring) (\S+)")
_DEBOOTSTRAP_INDEXES = {"InRelease", "Release", "Release.gpg", "Packages"}


class PackageCounter:
    """Counts packages through a bootstrap's output: `feed(line)` returns (message, step)
    when the line moved a count or started a step, else None.

    mmdebstrap --verbose passes apt's and dpkg's lines (`Get:`, `N newly installed`,
    `Unpacking`, `Setting up`) and says its steps (`I: ...`); debootstrap says `I: Retrieving
    NAME`, `I: Unpacking NAME`, `I: Configuring NAME` and no total."""

    def __init__(self) -> None:
        self.total = 0
        self.counts = {"downloading": 0, "unpacking": 0, "configuring": 0}
        self.downloading = False
        self.extracting = False
        self.seen: dict[str, set[str]] = {"unpacking": set(), "configuring": set()}

    def _count(self, what: str) -> tuple[str, bool]:
        self.counts[what] += 1
        of = f"/{self.total}" if self.total else ""
        d, u, c = (self.counts[k] for k in ("downloading", "unpacking", "configuring"))
        return f"packages {d}{of} downloaded, {u}{of} unpacked, {c}{of} configured", False

    def feed(self, line: str) -> tuple[str, bool] | None:
        line = line.rstrip("\r\n")
        if line.startswith("I: "):
            text = line[3:].rstrip(".")
            for prefix, step in _MMDEBSTRAP_STEPS.items():
                if text.startswith(prefix):
                    self.downloading = prefix == "downloading packages with apt"
                    return step, True
            found = _DEBOOTSTRAP.match(line)
            if found:
                kind, name = found.group(1), found.group(2).rstrip(".")
                if kind == "Retrieving":
                    return None if name in _DEBOOTSTRAP_INDEXES else self._count("downloading")
                if kind == "Extracting":  # essential packages' data only; unpacked again later
                    if self.extracting:
                        return None
                    self.extracting = True
                    return "extracting the essential packages", True
                what = "configuring" if kind == "Configuring" else "unpacking"
                if name in self.seen[what]:  # (debootstrap unpacks some packages twice)
                    return None
                self.seen[what].add(name)
                return self._count(what)
            return None
        if total := _APT_TOTAL.match(line):
            self.total += int(total.group(1)) + int(total.group(2))  # (the merged-/usr hook upgrades one)
            self.downloading = True
            return None
        if self.downloading and _APT_GET.match(line):
            return self._count("downloading")
        if self.total and (triggers := _TRIGGERS.match(line)):
            return f"running the triggers of {triggers.group(1)}", True
        if self.total and (dpkg := _DPKG.match(line)):  # (not the merged-/usr hook's own dpkg run)
            self.downloading = False
            return self._count("unpacking" if dpkg.group(1) == "Unpacking" else "configuring")
        return None


def run_reading(argv: list[str], what: str, log: Path, on_line: Callable[[str], None],
                env: dict[str, str] | None = None, cwd: Path | None = None) -> None:
    """Run argv, every output line to the log and to on_line (a \\r ends a line too);
    a failure names the command and shows the end of the log."""
    with open(log, "ab") as sink:
        try:
            proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, cwd=cwd)
        except OSError as exc:
            raise XenlabError(f"{what}: cannot run {argv[0]}: {exc}") from None
        assert proc.stdout is not None
        pending = b""
        while chunk := proc.stdout.read1(65536):
            sink.write(chunk)
            pending += chunk
            *lines, pending = re.split(rb"[\r\n]", pending)
            for raw in lines:
                if raw:
                    on_line(raw.decode(errors="replace"))
        if pending:
            on_line(pending.decode(errors="replace"))
        code = proc.wait()
    if code != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:])
        raise XenlabError(f"{what} failed (exit {code}): {' '.join(argv[:4])} ...\n{tail}")


# -- the tarball ----------------------------------------------------------------------
@dataclass(frozen=True)
class TarInventory:
    members: int
    file_bytes: int
    xattrs: list[tuple[str, str, bytes]]  # (absolute path in the image, attribute, value)


def tar_inventory(tarball: Path) -> TarInventory:
    """How many members and bytes a tarball holds, and its extended attributes."""
    members = size = 0
    xattrs = []
    try:
        with tarfile.open(tarball) as tar:
            for member in tar:
                members += 1
                if member.isreg():
                    size += member.size
                for key, value in member.pax_headers.items():
                    if key.startswith("SCHILY.xattr."):
                        path = "/" + member.name.removeprefix("./").rstrip("/")
                        xattrs.append((path, key.removeprefix("SCHILY.xattr."),
                                       value.encode("utf-8", "surrogateescape")))
    except (OSError, tarfile.TarError) as exc:
        raise XenlabError(f"cannot read the tree's tarball {tarball}: {exc}") from None
    return TarInventory(members, size, xattrs)


def debugfs_xattr_script(xattrs: list[tuple[str, str, bytes]], values_dir: Path) -> str:
    """debugfs commands that set each attribute (values written to files in values_dir)."""
    lines = []
    for index, (path, name, value) in enumerate(xattrs):
        if '"' in path or "\n" in path:
            raise XenlabError(f"cannot copy extended attributes of {path!r} (a quote or newline in its name)")
        value_file = values_dir / f"xattr-{index}"
        value_file.write_bytes(value)
        lines.append(f'ea_set -f {value_file} "{path}" {name}')
    return "\n".join(lines) + "\n"


# -- the fakeroot stage: run as `fakeroot -- python -m xenlab.images.rootless stage ...` --
def _say(message: str) -> None:
    print(f"@@ {message}", flush=True)


def _stage(tarball: Path, tree: Path, recipe_json: Path, out: Path, raw: Path) -> None:
    from .build import customize_tree, export_boot_files
    from .recipes import Recipe

    recipe = Recipe.model_validate_json(recipe_json.read_text())
    inventory = tar_inventory(tarball)
    tree.mkdir(parents=True, exist_ok=True)
    tar = subprocess.Popen(["tar", "-xpv", "--numeric-owner", "-f", str(tarball), "-C", str(tree)],
                           stdout=subprocess.PIPE, stderr=sys.stderr, text=True)
    assert tar.stdout is not None
    for done, _ in enumerate(tar.stdout, 1):
        if done % 500 == 0:
            _say(f"extracting the tree: {done}/{inventory.members} files")
    if tar.wait() != 0:
        raise XenlabError(f"extracting {tarball} failed (exit {tar.returncode})")
    _say(f"extracting the tree: {inventory.members}/{inventory.members} files")
    customize_tree(tree, recipe)
    export_boot_files(tree, recipe, out)
    _say("making the disk image")
    make_ext4(tree, raw, recipe.size_gib, inventory.file_bytes, _say, sys.stdout)


def make_ext4(tree: Path, raw: Path, size_gib: int, file_bytes: int, say: Callable[[str], None], output) -> None:
    """`mkfs.ext4 -d`: the tree into a file system image, saying how much is written."""
    from .build import ROOT_LABEL

    mkfs = subprocess.Popen(["mkfs.ext4", "-q", "-F", "-L", ROOT_LABEL, "-d", str(tree), str(raw), f"{size_gib}G"],
                            stdout=output, stderr=subprocess.STDOUT)
    want = max(file_bytes // (1 << 20), 1)
    while True:
        try:
            mkfs.wait(timeout=2)
            break
        except subprocess.TimeoutExpired:
            written = raw.stat().st_blocks * 512 // (1 << 20) if raw.exists() else 0
            say(f"writing the disk image: {min(written, want)}/{want} MiB")
    if mkfs.returncode != 0:
        raise XenlabError(f"mkfs.ext4 -d {tree} failed (exit {mkfs.returncode})")
    say(f"writing the disk image: {want}/{want} MiB")


def tree_bytes(tree: Path) -> int:
    """Bytes of the regular files under a tree (what mkfs.ext4 -d will write)."""
    total = 0
    for directory, _, files in os.walk(tree):
        for name in files:
            try:
                st = os.lstat(os.path.join(directory, name))
            except OSError:
                continue
            if stat.S_ISREG(st.st_mode):
                total += st.st_size
    return total


def main(argv: list[str]) -> int:
    if len(argv) != 6 or argv[0] != "stage":
        print("usage: fakeroot -- python -m xenlab.images.rootless stage TARBALL TREE RECIPE.json OUT RAW",
              file=sys.stderr)
        return 2
    try:
        _stage(*(Path(a) for a in argv[1:]))
    except XenlabError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
