"""Image builds without root: which road a build takes, its command lines, the counters
read from mmdebstrap's and debootstrap's output, and the disk-image steps run for real on
small trees (mkfs.ext4 -d, debugfs ea_set; no root needed for either)."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from xenlab.cli import main
from xenlab.errors import XenlabError
from xenlab.images.rootless import (
    INTERIM_CONF,
    MERGED_USR_HOOKS,
    MIN_SUBIDS,
    Check,
    PackageCounter,
    Throttle,
    choose_build_mode,
    debootstrap_argv,
    debugfs_xattr_script,
    fakeroot_stage_argv,
    make_ext4,
    missing_advice,
    mmdebstrap_argv,
    rootless_checks,
    subid_count,
    tar_inventory,
)

# Lines as mmdebstrap 1.3.5 --verbose printed them building the services image here.
MMDEBSTRAP_OUTPUT = """\
I: chroot architecture amd64 is equal to the host's architecture
I: running --setup-hook directly: /usr/share/mmdebstrap/hooks/merged-usr/setup00.sh /tmp/mmdebstrap.x
Unpacking usr-is-merged (1) ...
Setting up usr-is-merged (1) ...
I: running apt-get update...
Get:1 http://deb.debian.org/debian bookworm InRelease [151 kB]
Get:2 http://deb.debian.org/debian bookworm/main amd64 Packages [8790 kB]
I: downloading packages with apt...
0 upgraded, 3 newly installed, 0 to remove and 0 not upgraded.
Need to get 29.7 MB of archives.
Get:1 http://deb.debian.org/debian bookworm/main amd64 gcc-12-base amd64 12.2.0-14+deb12u1 [37.6 kB]
Get:2 http://deb.debian.org/debian bookworm/main amd64 libc6 amd64 2.36-9+deb12u14 [2759 kB]
Get:3 http://deb.debian.org/debian bookworm/main amd64 mawk amd64 1.3.4.20200120-3.1 [133 kB]
I: extracting archives...
I: installing essential packages...
Unpacking gcc-12-base:amd64 (12.2.0-14+deb12u1) ...
Unpacking libc6:amd64 (2.36-9+deb12u14) ...
Unpacking mawk (1.3.4.20200120-3.1) ...
Setting up gcc-12-base:amd64 (12.2.0-14+deb12u1) ...
Setting up libc6:amd64 (2.36-9+deb12u14) ...
Setting up mawk (1.3.4.20200120-3.1) ...
I: running --essential-hook directly: /usr/share/mmdebstrap/hooks/merged-usr/essential00.sh /tmp/mmdebstrap.x
1 upgraded, 0 newly installed, 0 to remove and 0 not upgraded.
Get:1 http://deb.debian.org/debian bookworm/main amd64 usr-is-merged all 37~deb12u1 [5616 B]
Unpacking usr-is-merged (37~deb12u1) over (1) ...
Setting up usr-is-merged (37~deb12u1) ...
I: installing remaining packages inside the chroot...
0 upgraded, 2 newly installed, 0 to remove and 0 not upgraded.
Get:1 http://deb.debian.org/debian bookworm/main amd64 kmod amd64 30+20221128-1 [95.2 kB]
Get:2 http://deb.debian.org/debian bookworm/main amd64 procps amd64 2:4.0.2-3 [709 kB]
Unpacking kmod (30+20221128-1) ...
Unpacking procps (2:4.0.2-3) ...
Setting up kmod (30+20221128-1) ...
Setting up procps (2:4.0.2-3) ...
Processing triggers for initramfs-tools (0.142+deb12u3) ...
I: creating tarball...
"""

# Lines as debootstrap 1.0.128 printed them (no totals).
DEBOOTSTRAP_OUTPUT = """\
I: Retrieving InRelease
I: Checking Release signature
I: Retrieving Packages
I: Retrieving adduser 3.134
I: Retrieving apt 2.6.1
I: Validating adduser 3.134
I: Extracting adduser...
I: Extracting apt...
I: Unpacking apt...
I: Unpacking adduser...
I: Unpacking apt...
I: Configuring adduser...
I: Base system installed successfully.
"""


def feed_all(text: str) -> list[tuple[str, bool]]:
    counter = PackageCounter()
    return [said for line in text.splitlines() if (said := counter.feed(line)) is not None]


def test_mmdebstrap_output_gives_steps_and_package_counts_against_apts_totals():
    said = feed_all(MMDEBSTRAP_OUTPUT)
    messages = [m for m, _ in said]
    # the merged-/usr hook's own dpkg run and the index downloads of apt-get update do not count
    assert messages[:3] == ["reading the mirror's package lists", "downloading the essential packages",
                            "packages 1/3 downloaded, 0/3 unpacked, 0/3 configured"]
    assert "packages 3/3 downloaded, 3/3 unpacked, 3/3 configured" in messages
    # the merged-/usr hook's upgrade counts; the second apt run adds to the total
    assert "packages 4/4 downloaded, 4/4 unpacked, 4/4 configured" in messages
    assert messages.index("installing the recipe's packages") < messages.index(
        "packages 6/6 downloaded, 4/6 unpacked, 4/6 configured")
    assert messages[-3] == "packages 6/6 downloaded, 6/6 unpacked, 6/6 configured"
    assert messages[-2:] == ["running the triggers of initramfs-tools", "packing the tree into a tarball"]
    steps = [m for m, step in said if step]
    assert steps == ["reading the mirror's package lists", "downloading the essential packages",
                     "extracting the essential packages", "installing the essential packages",
                     "installing the recipe's packages", *messages[-2:]]


def test_debootstrap_output_counts_packages_without_a_total():
    # extracting is one step, and a package unpacked twice counts once
    assert [m for m, _ in feed_all(DEBOOTSTRAP_OUTPUT)] == [
        "packages 1 downloaded, 0 unpacked, 0 configured", "packages 2 downloaded, 0 unpacked, 0 configured",
        "extracting the essential packages",
        "packages 2 downloaded, 1 unpacked, 0 configured", "packages 2 downloaded, 2 unpacked, 0 configured",
        "packages 2 downloaded, 2 unpacked, 1 configured"]


def test_throttle_passes_steps_at_once_and_counts_at_most_every_interval():
    now = [0.0]
    heard: list[str] = []
    say = Throttle(lambda subject, message: heard.append(f"{subject} {message}"), "img", interval=2.0,
                   clock=lambda: now[0])
    for t, message, step in ((0.0, "a 1", False), (0.5, "a 2", False), (1.0, "step b", True), (1.5, "b 1", False),
                             (2.9, "b 2", False), (3.1, "b 3", False), (3.2, "b 4", False)):
        now[0] = t
        say(message, step=step)
    # a step says the held-back last count of the step before it, then itself
    assert heard == ["img a 1", "img a 2", "img step b", "img b 3"]
    say.flush()  # the last count of a step is always said
    assert heard[-1] == "img b 4"
    say.flush()
    assert len(heard) == 5


def test_subordinate_ids_by_name_or_uid_summed_over_ranges():
    text = "alice:100000:65536\n# comment\nbob:165536:1000\n1001:200000:64536\nbroken:x:y\n"
    assert subid_count(text, "alice", 1000) == 65536
    assert subid_count(text, "bob", 1001) == 1000 + 64536
    assert subid_count(text, "carol", 1002) == 0
    assert subid_count(text, "broken", 7) == 0


def _etc(tmp_path: Path, subuid: str, subgid: str) -> Path:
    (tmp_path / "subuid").write_text(subuid)
    (tmp_path / "subgid").write_text(subgid)
    return tmp_path


def test_rootless_checks_say_what_is_missing_and_what_to_do(tmp_path):
    installed = {"mmdebstrap": "/usr/bin/mmdebstrap", "fakeroot": "/usr/bin/fakeroot", "debugfs": "/sbin/debugfs"}
    etc = _etc(tmp_path, f"dev:100000:{MIN_SUBIDS}\n", "dev:100000:1000\n")
    checks = {c.check: c for c in rootless_checks("dev", 1000, which=installed.get,
                                                 userns=lambda: "unshare: unshare failed: Operation not permitted",
                                                 etc=etc)}
    assert checks["mmdebstrap"].ok and checks["fakeroot"].ok
    assert not checks["newuidmap"].ok and checks["newuidmap"].detail == "apt-get install uidmap"
    assert checks["newuidmap"].by_setup
    ns = checks["user namespaces"]
    assert not ns.ok and not ns.by_setup and "Operation not permitted" in ns.detail and "sysctl" in ns.detail
    assert checks["subuid range"].ok and checks["subuid range"].detail == f"{MIN_SUBIDS} ids for dev"
    gid = checks["subgid range"]
    assert not gid.ok and not gid.by_setup and "usermod --add-subgids 100000-165535 dev" in gid.detail
    old = rootless_checks("dev", 1000, which=installed.get, userns=lambda: None, etc=etc,
                          merged_usr=tmp_path / "no-hooks")[0]
    assert not old.ok and "install the mmdebstrap of Debian 12" in old.detail


def test_the_road_a_build_takes():
    every = lambda: [Check("mmdebstrap", True, "/usr/bin/mmdebstrap")]
    lacking = lambda: [Check("user namespaces", False, "unshare failed; allow them", by_setup=False),
                       Check("fakeroot", False, "apt-get install fakeroot")]
    assert choose_build_mode(0, "", lacking).kind == "root"  # root needs no namespace: mmdebstrap as root
    assert choose_build_mode(0, "root", lacking).kind == "root"
    assert choose_build_mode(0, "debootstrap", lacking).kind == "debootstrap"
    assert choose_build_mode(0, "", lacking).mmdebstrap_mode == "root"
    assert choose_build_mode(1000, "", every).mmdebstrap_mode == "unshare"
    assert choose_build_mode(1000, "", every).kind == "unshare"
    assert choose_build_mode(1000, "auto", every).kind == "unshare"
    assert choose_build_mode(0, "unshare", every).kind == "unshare"
    with pytest.raises(XenlabError) as info:
        choose_build_mode(1000, "", lacking)
    text = str(info.value)
    assert "cannot build images without root here" in text
    assert "user namespaces: unshare failed; allow them" in text and "fakeroot: apt-get install fakeroot" in text
    assert "sudo XENLAB_CACHE=" in text  # where namespaces are closed, root is the way, said so
    with pytest.raises(XenlabError, match="needs root"):
        choose_build_mode(1000, "root", every)
    with pytest.raises(XenlabError, match="debootstrap: building images as root needs root"):
        choose_build_mode(1000, "debootstrap", every)
    with pytest.raises(XenlabError, match="use auto, unshare, root or debootstrap"):
        choose_build_mode(1000, "chroot", every)


def test_command_lines_per_mode(tmp_path):
    argv = mmdebstrap_argv("bookworm", ["openssh-server", "kmod"], "http://deb.example/debian", tmp_path / "r.tar")
    assert argv[:5] == ["mmdebstrap", "--mode=unshare", "--variant=minbase", "--format=tar", "--verbose"]
    assert f"--hook-dir={MERGED_USR_HOOKS}" in argv and "--include=openssh-server,kmod" in argv
    # the initramfs builds of package installation are small; none runs in a chroot after (initrd.py makes the real one)
    interim = next(a for a in argv if a.startswith("--essential-hook="))
    assert interim.endswith(f'echo MODULES=list > "$1/{INTERIM_CONF}"')
    assert not any(a.startswith("--customize-hook=") for a in argv)
    assert argv[-3:] == ["bookworm", str(tmp_path / "r.tar"), "http://deb.example/debian"]
    as_root = mmdebstrap_argv("bookworm", ["kmod"], "http://m/debian", tmp_path / "r.tar", "root")
    assert as_root[:2] == ["mmdebstrap", "--mode=root"] and as_root[2:] == mmdebstrap_argv(
        "bookworm", ["kmod"], "http://m/debian", tmp_path / "r.tar")[2:]
    assert debootstrap_argv("bookworm", ["kmod"], "http://m/debian", tmp_path / "t") == [
        "debootstrap", "--variant=minbase", "--include=kmod", "bookworm", str(tmp_path / "t"), "http://m/debian"]
    assert "--include=" not in " ".join(debootstrap_argv("bookworm", [], "http://m/debian", tmp_path))
    stage = fakeroot_stage_argv(*(tmp_path / n for n in ("r.tar", "tree", "recipe.json", "out", "disk.raw")))
    assert stage[:2] == ["fakeroot", "--"] and stage[3:6] == ["-m", "xenlab.images.rootless", "stage"]


def test_merged_usr_hooks_are_where_mmdebstrap_installs_them():
    if not shutil.which("mmdebstrap"):
        pytest.fail("mmdebstrap is not installed: run ./setup.sh")
    assert (MERGED_USR_HOOKS / "setup00.sh").exists() and (MERGED_USR_HOOKS / "essential00.sh").exists()


def _tarball_with_xattrs(path: Path) -> None:
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        for name, data, xattrs in (("./usr/bin/ping", b"\x7fELF", {"security.capability": bytes.fromhex(
                "0100000200200000000000000000000000000000")}), ("./etc/hostname", b"xenlab\n", {})):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.pax_headers = {f"SCHILY.xattr.{k}": v.decode("utf-8", "surrogateescape") for k, v in xattrs.items()}
            tar.addfile(info, io.BytesIO(data))
        journal = tarfile.TarInfo("./var/log/journal")
        journal.type = tarfile.DIRTYPE
        journal.pax_headers = {"SCHILY.xattr.user.note": "kept"}
        tar.addfile(journal)


def test_file_capabilities_come_from_the_tarball_into_the_file_system(tmp_path):
    for tool in ("mkfs.ext4", "debugfs"):
        if not shutil.which(tool):
            pytest.fail(f"{tool} is needed (e2fsprogs): run ./setup.sh")
    tarball = tmp_path / "root.tar"
    _tarball_with_xattrs(tarball)
    inventory = tar_inventory(tarball)
    assert inventory.members == 3 and inventory.file_bytes == 4 + 7
    assert sorted(inventory.xattrs) == [
        ("/usr/bin/ping", "security.capability", bytes.fromhex("0100000200200000000000000000000000000000")),
        ("/var/log/journal", "user.note", b"kept")]
    tree = tmp_path / "tree"
    tree.mkdir()
    with tarfile.open(tarball) as tar:
        tar.extractall(tree, filter="fully_trusted")
    raw = tmp_path / "disk.raw"
    said: list[str] = []
    with open(tmp_path / "mkfs.log", "wb") as log:
        make_ext4(tree, raw, 1, inventory.file_bytes, said.append, log)
    assert said[-1] == "writing the disk image: 1/1 MiB"
    values = tmp_path / "values"
    values.mkdir()
    script = tmp_path / "xattrs.debugfs"
    script.write_text(debugfs_xattr_script(inventory.xattrs, values))
    subprocess.run(["debugfs", "-w", "-f", str(script), str(raw)], capture_output=True, check=True)
    ping = subprocess.run(["debugfs", "-R", "ea_list /usr/bin/ping", str(raw)], capture_output=True, text=True,
                          check=True).stdout
    assert "security.capability (20) = 01 00 00 02 00 20 00 00" in ping
    journal = subprocess.run(["debugfs", "-R", "ea_list /var/log/journal", str(raw)], capture_output=True, text=True,
                             check=True).stdout
    assert 'user.note (4) = "kept"' in journal


def test_a_name_debugfs_cannot_quote_is_refused(tmp_path):
    with pytest.raises(XenlabError, match="quote or newline"):
        debugfs_xattr_script([('/etc/a"b', "user.x", b"1")], tmp_path)


def test_a_tarball_that_is_not_one_is_a_clear_error(tmp_path):
    bad = tmp_path / "root.tar"
    bad.write_bytes(b"not a tarball at all" * 100)
    with pytest.raises(XenlabError, match="cannot read the tree's tarball"):
        tar_inventory(bad)


def test_doctor_says_what_setup_installs_and_what_it_does_not():
    assert missing_advice(["fakeroot"], set()) == "Everything missing is installed by ./setup.sh"
    both = missing_advice(["fakeroot", "subuid range"], {"subuid range"})
    assert both.startswith("./setup.sh installs the missing packages; subuid range: not a package")
    only = missing_advice(["user namespaces"], {"user namespaces"})
    assert "setup.sh" not in only and only.startswith("user namespaces: not a package")


def test_doctor_shows_the_road_of_this_users_image_builds(monkeypatch, tmp_path):
    monkeypatch.setenv("XENLAB_IMAGE_BUILD", "debootstrap")
    result = CliRunner().invoke(main, ["doctor", "--json"])
    checks = {c["check"]: c for c in json.loads(result.output)["checks"]}
    assert "root (for image builds)" not in checks
    assert "debootstrap" in checks and "mmdebstrap" not in checks
    monkeypatch.setenv("XENLAB_IMAGE_BUILD", "root")
    result = CliRunner().invoke(main, ["doctor", "--json"])
    checks = {c["check"]: c for c in json.loads(result.output)["checks"]}
    assert {"mmdebstrap", "fakeroot", "debugfs"} <= set(checks) and "debootstrap" not in checks
    assert "newuidmap" not in checks and "subuid range" not in checks  # root needs no id ranges
    monkeypatch.setenv("XENLAB_IMAGE_BUILD", "unshare")
    result = CliRunner().invoke(main, ["doctor", "--json"])
    checks = {c["check"]: c for c in json.loads(result.output)["checks"]}
    for name in ("mmdebstrap", "newuidmap", "fakeroot", "user namespaces", "subuid range", "subgid range",
                 "image builds"):
        assert name in checks
    assert "debootstrap" not in checks
    monkeypatch.setenv("XENLAB_IMAGE_BUILD", "sometimes")
    monkeypatch.setenv("XENLAB_CACHE", str(tmp_path / "cache"))  # nothing cached: a build is needed
    result = CliRunner().invoke(main, ["images", "build", "services"])
    assert result.exit_code != 0 and "use auto, unshare, root or debootstrap" in result.output
    assert "Traceback" not in result.output
