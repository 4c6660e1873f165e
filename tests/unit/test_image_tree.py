"""What `customize_tree` makes of a debootstrap tree: the units a lab machine starts at boot,
per kind of machine (a Xen host gets dom0's scheduler weight and guest console logs)."""

from pathlib import Path

from xenlab.images.build import DOM0_WEIGHT_UNIT, customize_tree
from xenlab.images.recipes import Recipe


def _debootstrap_tree(root: Path, xen: bool) -> Path:
    for directory in ("etc/ssh/sshd_config.d", "etc/systemd/system", "etc/modprobe.d", "etc/default",
                      "usr/local/sbin", "var/lib/dbus", "var/cache/apt/archives"):
        (root / directory).mkdir(parents=True, exist_ok=True)
    (root / "etc/ssh/ssh_host_ed25519_key").write_text("a key every clone would share\n")
    if xen:
        (root / "etc/default/xen").write_text("TOOLSTACK=xl\n")
    return root


def test_a_xen_host_starts_dom0_weight_and_logs_guest_consoles(tmp_path):
    tree = _debootstrap_tree(tmp_path, xen=True)
    customize_tree(tree, Recipe(name="debian-xen", kind="debootstrap", boot="xen"))
    units = tree / "etc/systemd/system"
    wanted = units / "multi-user.target.wants" / DOM0_WEIGHT_UNIT
    assert wanted.is_symlink() and str(wanted.readlink()) == f"/etc/systemd/system/{DOM0_WEIGHT_UNIT}"
    unit = (units / DOM0_WEIGHT_UNIT).read_text()
    assert "After=xen.service" in unit and "xl sched-credit2 -d 0 -w 1024" in unit
    assert "--log-dir=/var/log/xen/console" in (tree / "etc/default/xen").read_text()
    assert (tree / "var/log/xen/console").is_dir()
    assert not list((tree / "etc/ssh").glob("ssh_host_*"))  # each machine's comes from its seed


def test_a_services_node_has_no_xen_units(tmp_path):
    tree = _debootstrap_tree(tmp_path, xen=False)
    customize_tree(tree, Recipe(name="services", kind="debootstrap", boot="linux"))
    units = tree / "etc/systemd/system"
    assert not (units / DOM0_WEIGHT_UNIT).exists()
    assert not (units / "multi-user.target.wants" / DOM0_WEIGHT_UNIT).exists()
    assert (units / "sysinit.target.wants/xenlab-seed.service").is_symlink()


DEBIAN_PAM_SSHD = """@include common-auth
account    required     pam_nologin.so
session    required     pam_loginuid.so
# Print the message of the day upon successful login.
session    optional     pam_motd.so  motd=/run/motd.dynamic
session    optional     pam_motd.so noupdate
session    required     pam_limits.so
"""


def test_ssh_sessions_skip_the_message_of_the_day_and_keep_the_rest(tmp_path):
    tree = _debootstrap_tree(tmp_path, xen=False)
    (tree / "etc/pam.d").mkdir(parents=True)
    (tree / "etc/pam.d/sshd").write_text(DEBIAN_PAM_SSHD)
    customize_tree(tree, Recipe(name="services", kind="debootstrap", boot="linux"))
    active = [line for line in (tree / "etc/pam.d/sshd").read_text().splitlines() if not line.lstrip().startswith("#")]
    assert active == ["@include common-auth", "account    required     pam_nologin.so",
                      "session    required     pam_loginuid.so", "session    required     pam_limits.so"]


def test_a_tree_without_sshd_pam_file_is_left_so(tmp_path):
    tree = _debootstrap_tree(tmp_path, xen=False)
    customize_tree(tree, Recipe(name="services", kind="debootstrap", boot="linux"))
    assert not (tree / "etc/pam.d/sshd").exists()
