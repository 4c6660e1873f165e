"""Warm lab states: what their key covers, and how the cache finds, bounds and forgets them."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from xenlab.errors import XenlabError
from xenlab.images.cache import BuiltImage
from xenlab.lab.accel import AccelChoice
from xenlab.lab.lab import Lab
from xenlab.lab.rundir import runs_base
from xenlab.lab.warm import WARM_FORMAT, WarmCache, cache_limit_bytes, warm_enabled, warm_key
from xenlab.spec import load_lab

TCG = AccelChoice("tcg", "qemu64", "test")


@pytest.fixture(autouse=True)
def private_run_base(tmp_path, monkeypatch):
    monkeypatch.setenv("XENLAB_RUN_DIR", str(tmp_path / "runs"))


def lab_from(tmp_path: Path, text: str, name: str = "lab.yaml") -> Lab:
    path = tmp_path / name
    path.write_text(text)
    return Lab(load_lab(path), str(path))


def images(tmp_path: Path, digest: str = "aaaa", built_at: float = 0.0) -> dict[str, BuiltImage]:
    built = {}
    for name in ("debian-xen", "services"):
        directory = tmp_path / "images" / f"{name}-{digest}"
        directory.mkdir(parents=True, exist_ok=True)
        built[name] = BuiltImage(name, digest, directory, "direct", built_at, 0.0)
    return built


POOL = "name: wk\nhosts:\n  h1:\n  h2:\n"


def test_the_key_is_stable_and_ignores_what_does_not_shape_the_machines(tmp_path):
    a = warm_key(lab_from(tmp_path, POOL), TCG, images(tmp_path))
    b = warm_key(lab_from(tmp_path, "# the default pool\n" + POOL.replace("h2:\n", "h2:   # second\n"), "b.yaml"),
                 TCG, images(tmp_path))
    assert a == b and len(a) == 64


@pytest.mark.parametrize("change", ["memory", "host", "image", "rebuilt", "accel", "name"])
def test_the_key_changes_with_anything_a_restored_state_depends_on(tmp_path, change):
    base = warm_key(lab_from(tmp_path, POOL), TCG, images(tmp_path))
    text, built, choice = POOL, images(tmp_path), TCG
    if change == "memory":
        text = POOL.replace("  h1:\n", "  h1:\n    memory_mib: 3072\n")
    elif change == "host":
        text = POOL + "  h3:\n"
    elif change == "image":
        built = images(tmp_path, digest="bbbb")
    elif change == "rebuilt":  # same recipe, built again (images build --force): another disk
        built = images(tmp_path, built_at=1.0)
    elif change == "accel":
        choice = AccelChoice("tcg", "qemu64,+svm", "test")
    else:
        text = POOL.replace("name: wk", "name: wk2")
    assert warm_key(lab_from(tmp_path, text, "changed.yaml"), choice, built) != base


def make_entry(root: Path, lab: str, key: str, age_s: float = 0.0, size: int = 1 << 20,
               image_dir: Path | None = None) -> Path:
    directory = root / f"{lab}-{key[:16]}"
    (directory / "keys").mkdir(parents=True)
    for name in ("id_ed25519", "id_ed25519.pub"):
        (directory / "keys" / name).write_text("k")
    (directory / "h1-root.qcow2").write_bytes(os.urandom(size))
    (directory / "h1.vmstate").write_bytes(b"s")
    (directory / "h1.seed.img").write_bytes(b"i")
    manifest = {"format": WARM_FORMAT, "key": key, "lab": lab, "created_at": time.time() - age_s,
                "image_dirs": [str(image_dir)] if image_dir else [], "state_bytes": 1,
                "machines": {"h1": {"drives": ["root"], "virt_caps": ["pv"]}}}
    (directory / "manifest.json").write_text(json.dumps(manifest))
    used = directory / "last-used"
    used.touch()
    os.utime(used, (time.time() - age_s, time.time() - age_s))
    return directory


def test_lookup_finds_a_complete_entry_under_its_own_key_only(tmp_path):
    cache = WarmCache(tmp_path / "labs")
    make_entry(cache.root, "wk", "k" * 64)
    assert cache.lookup("wk", "k" * 64).machine("h1")["virt_caps"] == ["pv"]
    assert cache.lookup("wk", "k" * 16 + "x" * 48) is None  # same directory name, other key
    assert cache.lookup("other", "k" * 64) is None


def test_an_entry_missing_a_file_or_its_image_is_discarded_not_served(tmp_path):
    cache = WarmCache(tmp_path / "labs")
    directory = make_entry(cache.root, "wk", "a" * 64)
    (directory / "h1.vmstate").unlink()
    assert cache.lookup("wk", "a" * 64) is None and not directory.exists()
    gone_image = make_entry(cache.root, "wk", "b" * 64, image_dir=tmp_path / "pruned-image")
    assert cache.lookup("wk", "b" * 64) is None and not gone_image.exists()


def test_prune_keeps_the_recently_used_within_the_limit_and_drops_the_broken(tmp_path):
    cache = WarmCache(tmp_path / "labs")
    old = make_entry(cache.root, "a", "1" * 64, age_s=3000)
    middle = make_entry(cache.root, "b", "2" * 64, age_s=2000)
    recent = make_entry(cache.root, "c", "3" * 64, age_s=10)
    broken = cache.root / "d-4444444444444444"
    broken.mkdir()
    (broken / "manifest.json").write_text("{not json")
    removed = cache.prune(limit_bytes=int(2.5 * (1 << 20)))
    assert set(removed) == {broken, old}
    assert middle.exists() and recent.exists()


def test_an_entry_a_running_lab_rests_on_is_never_pruned_or_forgotten(tmp_path):
    cache = WarmCache(tmp_path / "labs")
    used = make_entry(cache.root, "wk", "5" * 64, age_s=5000)
    run = runs_base() / "wk"  # the run base as xenlab makes it (0700: it refuses any other)
    run.mkdir(mode=0o700)
    state = {"lab": "wk", "spec_path": "", "spec": {}, "accel": "tcg", "cpu": "qemu64", "accel_reason": "",
             "created_at": 0.0, "tied_to_pid": None,
             "layers": [{"id": "warm", "dir": str(used), "parent": None, "created_at": 0.0, "cached": True}]}
    (run / "state.json").write_text(json.dumps(state))
    assert cache.prune(limit_bytes=0) == [] and used.exists()
    assert cache.forget("wk") == [] and used.exists()
    (run / "state.json").unlink()
    assert [e.dir for e in cache.forget("wk")] == [used] and not used.exists()


def test_the_switches_read_from_the_environment(monkeypatch):
    monkeypatch.setenv("XENLAB_WARM", "0")
    assert not warm_enabled()
    monkeypatch.setenv("XENLAB_WARM", "yes")
    assert warm_enabled()
    monkeypatch.setenv("XENLAB_CACHE_MAX_GB", "1.5")
    assert cache_limit_bytes() == int(1.5 * (1 << 30))
    monkeypatch.setenv("XENLAB_CACHE_MAX_GB", "lots")
    with pytest.raises(XenlabError, match="XENLAB_CACHE_MAX_GB"):
        cache_limit_bytes()


def run_lab_with_ready_layer(tmp_path: Path) -> tuple[Lab, Path]:
    from xenlab.lab.rundir import LabState, MachineState

    lab = lab_from(tmp_path, POOL)
    lab.run.create()
    state = LabState("wk", "", {}, "tcg", "qemu64", "", 0.0, None)
    image_dir = tmp_path / "images" / "debian-xen-aaaa"
    image_dir.mkdir(parents=True)
    layer = lab.run.root / "layers" / "1-ready"
    layer.mkdir(parents=True)
    keys = lab.run.root / "keys"
    for name in ("id_ed25519", "id_ed25519.pub"):
        (keys / name).write_text(name)
    for host in lab.machines.values():
        state.machines[host.name] = MachineState(ssh_port=1, image_dir=str(image_dir), virt_caps=["pv", "hvm"])
        (keys / f"host-{host.name}").write_text("private")
        (keys / f"host-{host.name}.pub").write_text("public")
        (host.dir / "seed.img").write_bytes(b"seed")
        host.serial_log.write_text(f"Xen booted on {host.name}\n")
        (layer / f"{host.name}-root.qcow2").write_bytes(b"disk")
        (layer / f"{host.name}.vmstate").write_bytes(b"state")
    lab._state = state
    lab.save_state()
    return lab, layer


def test_a_captured_state_holds_what_a_restore_needs_and_a_second_capture_keeps_the_first(tmp_path):
    lab, layer = run_lab_with_ready_layer(tmp_path)
    cache = WarmCache(tmp_path / "labs")
    entry = cache.capture(lab, "c" * 64, layer, state_bytes=15)
    assert entry.problems() == []
    assert cache.lookup("wk", "c" * 64) == entry
    assert entry.machine("h1") == {"drives": ["root"], "virt_caps": ["pv", "hvm"]}
    assert (entry.dir / "h1-root.qcow2").stat().st_ino == (layer / "h1-root.qcow2").stat().st_ino  # linked
    assert oct((entry.dir / "keys" / "host-h1").stat().st_mode & 0o777) == "0o600"
    assert entry.serial_log("h2").read_text() == "Xen booted on h2\n"
    assert oct(entry.dir.stat().st_mode & 0o777) == "0o700"
    again = cache.capture(lab, "c" * 64, layer, state_bytes=15)
    assert again.dir == entry.dir and again.created_at == entry.created_at
    assert [p.name for p in cache.root.iterdir()] == [entry.dir.name]  # no staging left behind
