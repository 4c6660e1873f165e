"""An ordinary user builds a golden image: a throwaway user (created here when the suite
runs as root) builds the services image into a private cache, with no root step, and the
disk image holds what a root build holds (owners, device nodes, file capabilities, the
lab's customisation, its own small initramfs). A user without subordinate ids is told
what to do, by the build and by `xenlab doctor`.

The full debian-xen image is built the same way only nightly (about 5 minutes more).
Root's own road (mmdebstrap as root, the same pipeline) builds the services image too.
These tests boot no lab: they replace the session lab's per-module restore with nothing.
"""

from __future__ import annotations

import dataclasses
import gzip
import json
import os
import pwd
import re
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from xenlab.images import ImageCache
from xenlab.images.build import INITRAMFS_MODULES, MASKED_GENERATORS
from xenlab.images.identity import generate_keypair, write_seed_disk
from xenlab.images.recipes import FILES_DIR, load_recipes
from xenlab.lab.accel import AccelChoice
from xenlab.lab.qemu import MachineFiles, qemu_argv
from xenlab.plan import plan_lab
from xenlab.spec import load_lab
from xenlab.waiting import StopWaiting, wait_for

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parents[2]
BUILDER = "xenlab-rootless"  # a throwaway user for the builds
NO_SUBIDS = "xenlab-nosubid"  # a throwaway user with no subordinate ids
XENLAB = (sys.executable, "-c", "import sys; from xenlab.cli import main; sys.argv[0] = 'xenlab'; main()")


@pytest.fixture(scope="module", autouse=True)
def from_ready():
    """(No lab here: the e2e conftest's restore of the session lab is not wanted.)"""


def _as(user: str, *argv: str, env: dict[str, str] | None = None, timeout: float = 1800) -> subprocess.CompletedProcess:
    prefix = [] if os.geteuid() != 0 else ["runuser", "-u", user, "--"]
    environment = {"PYTHONPATH": str(REPO), "PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
                   "HOME": "/nonexistent", "LANG": "C.UTF-8", "COLUMNS": "250", **(env or {})}
    return subprocess.run([*prefix, "env", "-i", *(f"{k}={v}" for k, v in environment.items()), *argv],
                          capture_output=True, text=True, timeout=timeout, check=False, cwd="/")


@pytest.fixture(scope="module")
def throwaway_users():
    """The ordinary users the tests build as: this user if it is not root, else two made here."""
    if os.geteuid() != 0:
        me = pwd.getpwuid(os.geteuid()).pw_name
        return {"builder": me, "no_subids": None}
    made = []
    for name, extra in ((BUILDER, []), (NO_SUBIDS, ["-K", "SUB_UID_COUNT=0", "-K", "SUB_GID_COUNT=0"])):
        try:
            pwd.getpwnam(name)
        except KeyError:
            subprocess.run(["useradd", "--no-create-home", "--shell", "/usr/sbin/nologin", *extra, name], check=True)
            made.append(name)
    reach = [Path(sys.executable).resolve(), Path(sys.prefix), REPO]
    granted = {user: _grant_traverse(user, reach) for user in (BUILDER, NO_SUBIDS)}
    probe = _as(BUILDER, sys.executable, "-c", "import xenlab, pydantic, click")
    if probe.returncode != 0:
        for user, dirs in granted.items():
            _revoke_traverse(user, dirs)
        pytest.fail(f"an ordinary user cannot run this Python ({sys.executable}) with xenlab from {REPO}: "
                    f"{probe.stderr.strip().splitlines()[-1] if probe.stderr.strip() else probe.returncode}; "
                    "install xenlab where every user can read it (./setup.sh with the system python3)")
    try:
        yield {"builder": BUILDER, "no_subids": NO_SUBIDS}
    finally:
        for user, dirs in granted.items():
            _revoke_traverse(user, dirs)
        for name in made:
            subprocess.run(["userdel", name], check=False)


def _grant_traverse(user: str, paths: list[Path]) -> list[tuple[Path, bool]]:
    """Let `user` (only) pass through the directories above `paths` that others may not
    enter (root's home, where pyenv keeps this Python): an ACL entry with `x` alone, so it
    reaches the interpreter and xenlab's source but lists nothing. Taken back afterwards."""
    granted: list[tuple[Path, bool]] = []
    for path in paths:
        for directory in reversed(path.parents):
            if directory in [d for d, _ in granted] or directory.stat().st_mode & 0o001:
                continue
            had_acl = bool(subprocess.run(["getfacl", "--skip-base", "-p", str(directory)], capture_output=True,
                                          text=True, check=True).stdout.strip())
            subprocess.run(["setfacl", "-m", f"u:{user}:x", str(directory)], check=True)
            granted.append((directory, had_acl))
    return granted


def _revoke_traverse(user: str, granted: list[tuple[Path, bool]]) -> None:
    """Back as it was: our entry out, and the whole ACL where the directory had none."""
    for directory, had_acl in granted:
        subprocess.run(["setfacl", "-x", f"u:{user}", str(directory)] if had_acl else ["setfacl", "-b", str(directory)],
                       check=False)


def _private_cache(users) -> Path:
    """An image cache only the builder owns (pytest's tmp_path is private to root)."""
    directory = Path(tempfile.mkdtemp(prefix="xenlab-rootless-cache-", dir="/var/tmp"))
    if os.geteuid() == 0:
        shutil.chown(directory, users["builder"], users["builder"])
    return directory


@pytest.fixture
def private_cache(throwaway_users):
    directory = _private_cache(throwaway_users)
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="module")
def services_built(throwaway_users):
    """The services image as the builder built it, and what the build said."""
    cache = _private_cache(throwaway_users)
    try:
        yield _build(throwaway_users["builder"], "services", cache)
    finally:
        shutil.rmtree(cache, ignore_errors=True)


BUILD = """
import sys, time
from xenlab.images import ImageCache
started = time.monotonic()
def progress(subject, message):
    print(f"{time.monotonic() - started:6.1f}s {subject} {message}", flush=True)
image = ImageCache().ensure(sys.argv[1], progress)
print("BUILT", image.directory, image.build_seconds)
"""


def _debugfs(raw: Path, request: str) -> str:
    return subprocess.run(["debugfs", "-R", request, str(raw)], capture_output=True, text=True, check=True).stdout


def _stat(raw: Path, path: str) -> dict[str, str]:
    text = _debugfs(raw, f'stat "{path}"')
    found = re.search(r"Type: (.+?)\s+Mode:\s+(\d+).*?User:\s+(\d+)\s+Group:\s+(\d+)", text, re.DOTALL)
    assert found, f"{path} is not in the image:\n{text}"
    return dict(zip(("type", "mode", "uid", "gid"), found.groups(), strict=True))


def _build(builder: str, name: str, cache: Path) -> tuple[Path, str]:
    for tool in ("mmdebstrap", "newuidmap", "fakeroot", "debugfs", "qemu-img"):
        if not shutil.which(tool):
            pytest.fail(f"{tool} is not installed: run ./setup.sh")
    done = _as(builder, sys.executable, "-c", BUILD, name, env={"XENLAB_CACHE": str(cache)})
    print(done.stdout[-6000:])
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return Path(done.stdout.split("BUILT ", 1)[1].split()[0]), done.stdout


def check_progress(out: str, road: str = "building without root: mmdebstrap in a user namespace") -> None:
    assert road in out
    # every long step is shown with a count, the package counts reaching apt's totals
    counts = re.findall(r"packages (\d+)/(\d+) downloaded, (\d+)/\2 unpacked, (\d+)/\2 configured", out)
    assert len(counts) > 5 and any(len(set(c)) == 1 for c in counts), out
    for step in ("extracting the tree: ", "writing the disk image: ", "converting the disk image to qcow2"):
        assert step in out, f"no {step!r} in the build's progress"


def check_image(directory: Path, name: str, tmp_path: Path) -> None:
    """A built image holds what a root build holds: owners, nodes, capabilities, our files."""
    recipe = load_recipes(REPO / "images")[name]
    cache = directory.parent
    assert directory.name == f"{name}-{ImageCache(REPO / 'images', cache).digest(name)}"  # same digest as root's
    manifest = json.loads((directory / "manifest.json").read_text())
    assert manifest["digest"] == directory.name.rsplit("-", 1)[1]
    assert (directory / "vmlinuz").stat().st_size > 4 << 20
    initrd = (directory / "initrd.img").stat().st_size
    assert 1 << 20 < initrd < 16 << 20, f"initrd of {initrd} bytes: not the small MODULES=list one"
    raw = tmp_path / "disk.raw"
    subprocess.run(["qemu-img", "convert", "-f", "qcow2", "-O", "raw", str(directory / "disk.qcow2"), str(raw)],
                   check=True)
    assert "Filesystem volume name:   xlroot" in subprocess.run(["dumpe2fs", "-h", str(raw)], capture_output=True,
                                                                text=True, check=True).stdout
    assert _stat(raw, "/etc/ssh/sshd_config") == {"type": "regular", "mode": "0644", "uid": "0", "gid": "0"}
    assert _stat(raw, "/etc/shadow") == {"type": "regular", "mode": "0640", "uid": "0", "gid": "42"}
    assert _stat(raw, "/dev/null")["type"] == "character special"
    assert _stat(raw, "/usr/local/sbin/xenlab-seed")["mode"] == "0755"
    assert _stat(raw, "/etc/machine-id")["mode"] == "0444"
    assert _stat(raw, "/")["uid"] == "0"
    kernel_version = (directory / "kernel-version").read_text().strip()
    assert _stat(raw, f"/boot/vmlinuz-{kernel_version}")["uid"] == "0"
    assert _debugfs(raw, "cat /etc/ssh/sshd_config.d/xenlab.conf") == (FILES_DIR / "sshd-xenlab.conf").read_text()
    assert _debugfs(raw, "cat /etc/hostname") == "xenlab\n"
    # the machine boots xenlab's own initramfs (initrd.py), in /boot as QEMU gets it
    boot_initrd = tmp_path / "boot-initrd.img"
    _debugfs(raw, f'dump "/boot/initrd.img-{kernel_version}" "{boot_initrd}"')
    assert boot_initrd.read_bytes() == (directory / "initrd.img").read_bytes()
    unpacked = tmp_path / "initrd"
    unpacked.mkdir()
    subprocess.run(["cpio", "--quiet", "-idm"], cwd=unpacked, check=True,
                   input=gzip.decompress(boot_initrd.read_bytes()))
    assert (unpacked / "init").read_text() == (FILES_DIR / "boot-init.sh").read_text()
    assert (unpacked / "conf/modules").read_text().split() == INITRAMFS_MODULES
    assert list((unpacked / "usr/lib/modules" / kernel_version).rglob("virtio_blk.ko"))
    for generator in MASKED_GENERATORS:
        assert _stat(raw, f"/etc/systemd/system-generators/{generator}")["type"] == "symlink"
    assert "blacklist pcspkr" in _debugfs(raw, "cat /etc/modprobe.d/xenlab-lab-machine.conf")
    assert "security.capability (20)" in _debugfs(raw, "ea_list /usr/bin/ping")  # ping's cap_net_raw
    assert "system.posix_acl_access" in _debugfs(raw, "ea_list /var/log/journal")
    for unit in recipe.mask_units:
        assert _stat(raw, f"/etc/systemd/system/{unit}")["type"] == "symlink"
    status = _debugfs(raw, "cat /var/lib/dpkg/status")
    installed = set(re.findall(r"^Package: (\S+)\nStatus: install ok installed", status, re.MULTILINE))
    assert set(recipe.packages) <= installed
    assert "usr-is-merged" in installed and "usrmerge" not in installed  # merged /usr as debootstrap makes it
    assert _stat(raw, "/bin")["type"] == "symlink"
    if recipe.boot == "xen":
        assert (directory / "xen.elf").stat().st_size > 1 << 20
        assert (directory / "modules" / "order").read_text().split()


def test_an_ordinary_user_builds_the_services_image(throwaway_users, services_built, tmp_path):
    directory, said = services_built
    check_progress(said)
    assert directory.stat().st_uid == pwd.getpwnam(throwaway_users["builder"]).pw_uid
    check_image(directory, "services", tmp_path)


def test_root_builds_the_same_image_on_the_same_road(tmp_path):
    """Root's default road is the ordinary user's pipeline with mmdebstrap --mode=root (about
    twice as fast as debootstrap): the image it makes passes the same checks."""
    if os.geteuid() != 0:
        pytest.skip("the suite runs as an ordinary user: root's road is not open to it")
    for tool in ("mmdebstrap", "fakeroot", "debugfs", "qemu-img"):
        if not shutil.which(tool):
            pytest.fail(f"{tool} is not installed: run ./setup.sh")
    cache = tmp_path / "root-cache"
    done = subprocess.run([sys.executable, "-c", BUILD, "services"], capture_output=True, text=True, timeout=1800,
                          check=False, cwd="/", env={**os.environ, "XENLAB_CACHE": str(cache), "PYTHONPATH": str(REPO),
                                                      "XENLAB_IMAGE_BUILD": "auto"})
    print(done.stdout[-6000:])
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    check_progress(done.stdout, "building as root: mmdebstrap, the disk image under fakeroot")
    check_image(Path(done.stdout.split("BUILT ", 1)[1].split()[0]), "services", tmp_path)


@pytest.mark.nightly(reason="builds the full debian-xen image without root: about 5 minutes on 2 cores")
@pytest.mark.estimate(5 * 60)
def test_an_ordinary_user_builds_the_xen_host_image(throwaway_users, private_cache, tmp_path):
    directory, said = _build(throwaway_users["builder"], "debian-xen", private_cache)
    check_progress(said)
    check_image(directory, "debian-xen", tmp_path)


ASK = "hostname; systemctl is-system-running --wait; systemctl is-active nfs-server; getcap /usr/bin/ping"


def test_the_image_an_ordinary_user_built_boots_as_the_lab_boots_it(services_built, tmp_path):
    """The lab's own QEMU command line and seed disk (no lab networks: no vde switch here);
    systemd reaches `running`, the NFS server is up, ping keeps its capability."""
    directory, _ = services_built
    plan = plan_lab(load_lab(REPO / "labs/xen-pool2.yaml"))
    planned = next(m for m in plan.machines if m.role == "services")
    machine = dataclasses.replace(planned, nics=())
    host_key, login = generate_keypair(tmp_path / "host", "host"), generate_keypair(tmp_path / "login", "login")
    seed = write_seed_disk(tmp_path / "seed.raw", plan, planned, host_key, login, nfs_export="/srv/xenlab")
    overlay = tmp_path / "overlay.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", str(directory / "disk.qcow2"),
                    str(overlay)], check=True)
    files = MachineFiles(overlay=overlay, seed=seed, serial_log=tmp_path / "serial.log",
                         qmp_socket=tmp_path / "qmp.sock", pidfile=tmp_path / "qemu.pid",
                         kernel=directory / "vmlinuz", initrd=directory / "initrd.img", hypervisor=None)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    qemu = subprocess.Popen(qemu_argv(machine, files, AccelChoice("tcg", "qemu64", "test"), port, {}),
                            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    ssh = ["ssh", "-i", str(login.private_path), "-p", str(port), "-o", "StrictHostKeyChecking=no",
           "-o", "UserKnownHostsFile=/dev/null", "-o", "ConnectTimeout=5", "-o", "BatchMode=yes", "root@127.0.0.1"]
    try:
        def asked() -> list[str] | None:
            if qemu.poll() is not None:
                raise StopWaiting(f"QEMU exited with {qemu.returncode}")
            done = subprocess.run([*ssh, ASK], capture_output=True, text=True, timeout=120, check=False)
            return done.stdout.split() or None

        def serial() -> str:
            return files.serial_log.read_text(errors="replace")[-3000:] if files.serial_log.exists() else ""

        answer = wait_for(asked, "SSH from the rootless image", timeout=300, interval=3, evidence=serial)
        assert answer[:3] == ["services", "running", "active"], answer
        assert "cap_net_raw=ep" in answer
    finally:
        qemu.terminate()
        qemu.wait(timeout=30)


def test_a_user_without_subordinate_ids_is_told_what_to_do(throwaway_users, tmp_path):
    user = throwaway_users["no_subids"]
    if user is None:
        pytest.skip("needs root to make a user without subordinate ids")
    cache = Path(tempfile.mkdtemp(prefix="xenlab-nosubid-cache-", dir="/var/tmp"))
    shutil.chown(cache, user, user)
    try:
        built = _as(user, *XENLAB, "images", "build", "services", env={"XENLAB_CACHE": str(cache)}, timeout=120)
        doctor = _as(user, *XENLAB, "doctor", timeout=120)
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    said = built.stdout + built.stderr
    assert built.returncode != 0 and "Traceback" not in said
    assert "cannot build images without root here" in said
    assert f"usermod --add-subuids 100000-165535 {user}" in said and "sudo XENLAB_CACHE=" in said
    assert doctor.returncode == 1 and "Traceback" not in doctor.stdout + doctor.stderr
    assert "subuid range" in doctor.stdout and "Everything missing is installed by ./setup.sh" not in doctor.stdout
    assert "not a package; the detail says what to do" in doctor.stdout
