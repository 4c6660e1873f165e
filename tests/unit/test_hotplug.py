"""The hotplug choice of an xl lab: the guest config names the scripts, the lab file is
checked, and xenlab's lean scripts attach a real loop device and a real bridge port.

xenstore exists only under Xen, so the scripts' xenstore-read/-write are served here by a
small stand-in over a directory; losetup, stat and ip are the machine's own (root needed;
the vif test runs in network and mount namespaces of its own, with their own /sys).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from xenlab.errors import SpecError
from xenlab.spec import load_lab
from xenlab.toolstack.base import GuestSpec
from xenlab.toolstack.hotplug import LEAN_FILES, lean_script, scripts_for
from xenlab.toolstack.xl import guest_config

XENSTORE_STANDIN = """#!/bin/sh
# xenstore-read / xenstore-write over $XS_DIR (one file per path)
case "$(basename "$0")" in
xenstore-read)
    for p in "$@"; do [ -f "$XS_DIR/$p" ] || { echo "couldn't read path $p" >&2; exit 1; }; done
    for p in "$@"; do cat "$XS_DIR/$p"; echo; done ;;
xenstore-write)
    while [ $# -ge 2 ]; do mkdir -p "$XS_DIR/$(dirname "$1")"; printf %s "$2" > "$XS_DIR/$1"; shift 2; done ;;
esac
"""
ROOT = os.geteuid() == 0


def config(kind: str) -> str:
    return guest_config(GuestSpec("vm1"), sr="/srv/xenlab", address="10.0.0.101/24", mac="00:16:3e:00:00:01",
                        heartbeat_to=None, hotplug=scripts_for(kind))


def test_debian_is_the_default_and_names_debians_scripts():
    assert config("debian") == guest_config(GuestSpec("vm1"), sr="/srv/xenlab", address="10.0.0.101/24",
                                            mac="00:16:3e:00:00:01", heartbeat_to=None)
    assert "script=block," in config("debian")
    assert "vif-bridge" not in config("debian")  # xl.conf's default vif script


def test_lean_names_xenlabs_scripts_for_disk_and_vif():
    text = config("lean")
    assert 'vif = ["bridge=xenbr0,mac=00:16:3e:00:00:01,script=/etc/xen/scripts/xenlab-vif-bridge"]' in text
    assert "script=/etc/xen/scripts/xenlab-block,target=/srv/xenlab/guests/vm1/disk.img" in text


def test_unknown_kinds_are_refused():
    with pytest.raises(ValueError):
        scripts_for("fast")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        lean_script("../etc/passwd")


@pytest.mark.parametrize(("key", "chosen", "default"), [("hotplug", "lean", "debian"),
                                                     ("migration_transport", "tcp", "ssh")])
def test_the_lab_files_xl_pool_choices(tmp_path, key, chosen, default):
    """Both choices of what an xl pool runs: read, defaulted, refused when unknown, and refused
    on a lab whose toolstack is xapi (a sim lab), each with its line."""
    lab = tmp_path / "lab.yaml"
    lab.write_text(f"name: t\n{key}: {chosen}\nhosts: {{h1: }}\n")
    assert getattr(load_lab(lab), key) == chosen
    lab.write_text("name: t\nhosts: {h1: }\n")
    assert getattr(load_lab(lab), key) == default
    for text, line, words in ((f"name: t\nhosts: {{h1: }}\n{key}: quick\n", 3, key),
                              (f"name: t\nbackend: sim\nhosts: {{h1: }}\n{key}: {chosen}\n", 4, "xl labs")):
        lab.write_text(text)
        with pytest.raises(SpecError) as caught:
            load_lab(lab)
        assert caught.value.problems[0][0] == line and words in caught.value.problems[0][1]


@pytest.fixture
def scripts(tmp_path) -> tuple[Path, dict[str, str]]:
    """The lean scripts and a PATH whose xenstore-read/-write are the stand-in."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    standin = bin_dir / "xenstore-read"
    standin.write_text(XENSTORE_STANDIN)
    standin.chmod(0o755)
    (bin_dir / "xenstore-write").symlink_to(standin)
    for name in LEAN_FILES:
        (bin_dir / name).write_text(lean_script(name))
        (bin_dir / name).chmod(0o755)
    env = {"PATH": f"{bin_dir}:/usr/sbin:/usr/bin:/sbin:/bin", "XS_DIR": str(tmp_path / "xs"),
           "XENBUS_PATH": "backend/vbd/7/51712"}
    return bin_dir, env


def xs(env: dict[str, str], path: str) -> str | None:
    file = Path(env["XS_DIR"], path)
    return file.read_text() if file.exists() else None


@pytest.mark.skipif(not ROOT or not Path("/dev/loop-control").exists() or not shutil.which("losetup"),
                    reason="needs root and loop devices")
def test_lean_block_binds_a_loop_device_and_releases_it(scripts, tmp_path):
    bin_dir, env = scripts
    disk = tmp_path / "disk.img"
    disk.write_bytes(b"\0" * (1 << 20))
    subprocess.run([str(bin_dir / "xenstore-write"), "backend/vbd/7/51712/params", str(disk),
                    "backend/vbd/7/51712/mode", "w"], env=env, check=True)
    added = subprocess.run(["sh", str(bin_dir / "xenlab-block"), "add"], check=False, env=env, capture_output=True, text=True)
    loop = xs(env, "backend/vbd/7/51712/node")
    try:
        assert added.returncode == 0, added.stderr
        assert loop and loop.startswith("/dev/loop")
        listed = json.loads(subprocess.run(["losetup", "-J", "-l", loop], capture_output=True, text=True,
                                           check=True).stdout)["loopdevices"][0]
        assert listed["back-file"].split(" ")[0] == str(disk) and listed["ro"] in (False, "0", 0)
        st = os.stat(loop)
        assert xs(env, "backend/vbd/7/51712/physical-device") == f"{os.major(st.st_rdev):x}:{os.minor(st.st_rdev):x}"
        assert xs(env, "backend/vbd/7/51712/hotplug-status") == "connected"
    finally:
        removed = subprocess.run(["sh", str(bin_dir / "xenlab-block"), "remove"], check=False, env=env, capture_output=True)
    assert removed.returncode == 0
    assert subprocess.run(["losetup", "-j", str(disk)], check=False, capture_output=True, text=True).stdout == ""


def test_lean_block_refuses_a_missing_file_through_xenstore(scripts, tmp_path):
    bin_dir, env = scripts
    subprocess.run([str(bin_dir / "xenstore-write"), "backend/vbd/7/51712/params", str(tmp_path / "gone.img"),
                    "backend/vbd/7/51712/mode", "w"], env=env, check=True)
    added = subprocess.run(["sh", str(bin_dir / "xenlab-block"), "add"], check=False, env=env, capture_output=True, text=True)
    assert added.returncode == 1
    assert xs(env, "backend/vbd/7/51712/hotplug-status") == "error"
    assert "gone.img is not a file" in xs(env, "backend/vbd/7/51712/hotplug-error")


@pytest.mark.skipif(not ROOT or not shutil.which("unshare") or not shutil.which("ip"),
                    reason="needs root, unshare and ip")
def test_lean_vif_puts_the_backend_on_the_bridge(scripts):
    bin_dir, env = scripts
    env = {**env, "XENBUS_PATH": "backend/vif/7/0", "vif": "vif7.0"}
    subprocess.run([str(bin_dir / "xenstore-write"), "backend/vif/7/0/bridge", "xenbr0"], env=env, check=True)
    setup = ("mount -t sysfs sysfs /sys && ip link add xenbr0 type bridge && ip link set xenbr0 mtu 1400 && "
             "ip link add vif7.0 type veth peer name vif7.0-peer")
    inside = (f"{setup} || exit 99; sh {bin_dir}/xenlab-vif-bridge online && ip -j link show vif7.0 && "
              f"sh {bin_dir}/xenlab-vif-bridge offline && ip -j link show vif7.0")
    done = subprocess.run(["unshare", "-n", "-m", "sh", "-c", inside], check=False, env=env, capture_output=True, text=True)
    if done.returncode == 99 or (done.returncode != 0 and "unshare" in done.stderr):
        pytest.skip(f"no bridge and veth in a network namespace here: {done.stderr.strip()}")
    assert done.returncode == 0, done.stderr
    online, offline = (json.loads(line)[0] for line in done.stdout.splitlines() if line.startswith("["))
    assert online["master"] == "xenbr0" and online["mtu"] == 1400 and online["address"] == "fe:ff:ff:ff:ff:ff"
    assert "UP" in online["flags"]
    assert "master" not in offline
    assert xs(env, "backend/vif/7/0/hotplug-status") == "connected"
