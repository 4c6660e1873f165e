"""Warm labs: a lab's `ready` state kept in the cache, so the next `up` restores it.

An entry is the lab's `ready` checkpoint (each machine's frozen disk layers and saved
RAM and device state, see `lab.layers`) plus what a restore needs besides: the lab's
keys and each machine's seed disk and facts. It is found by a key over everything that
makes it valid (`warm_key`): the validated lab spec, the images it boots (by content
digest), the accelerator and CPU model, the QEMU version, and the xenlab sources that
shape a booted machine (command lines, identity and seed layout, address plan, layers).
Change any of them and the key changes: a stale state is never served.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import XenlabError
from ..images.cache import default_cache_dir
from .accel import AccelChoice
from .qemu import MachineFiles, qemu_argv
from .rundir import RunDir, runs_base

if TYPE_CHECKING:
    from ..images.cache import BuiltImage
    from ..images.variant import BuiltVariant
    from .lab import Lab

WARM_FORMAT = 2  # bump when what an entry holds, or how it is restored, changes
PACKAGE = Path(__file__).resolve().parent.parent
BOOT_SOURCES = ("lab/qemu.py", "lab/layers.py", "images/identity.py", "plan.py")
DEFAULT_LIMIT_GB = 20.0
KEY_FILES = ("id_ed25519", "id_ed25519.pub")


def cache_root() -> Path:
    env = os.environ.get("XENLAB_LAB_CACHE")
    return Path(env) if env else default_cache_dir().parent / "labs"


def warm_enabled() -> bool:
    """XENLAB_WARM=0 turns warm labs off (every `up` boots, nothing is kept)."""
    return os.environ.get("XENLAB_WARM", "1").strip().lower() not in ("0", "no", "false", "off")


def cache_limit_bytes() -> int:
    """The most the lab states may take together (XENLAB_CACHE_MAX_GB, default 20)."""
    raw = os.environ.get("XENLAB_CACHE_MAX_GB", "")
    try:
        gb = float(raw) if raw.strip() else DEFAULT_LIMIT_GB
    except ValueError:
        raise XenlabError(f"XENLAB_CACHE_MAX_GB={raw!r} is not a number of gigabytes") from None
    return int(max(0.0, gb) * (1 << 30))


@functools.cache
def qemu_version() -> str:
    try:
        done = subprocess.run(["qemu-system-x86_64", "--version"], capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return done.stdout.splitlines()[0] if done.stdout else "unknown"


def warm_key(lab: Lab, choice: AccelChoice, built: dict[str, BuiltImage],
             variants: dict[str, BuiltVariant] | None = None) -> str:
    """The key of `lab`'s warm state: a digest of everything a restored state depends on
    (a host's image variant, see images/variant.py, by its directory: image and builder digests)."""
    machines = {}
    for host in lab.machines.values():
        image = built[host.plan.image_key]
        variant = (variants or {}).get(host.name)
        placeholder = Path("/run") / host.name
        files = MachineFiles(
            overlay=placeholder / "root.qcow2", seed=placeholder / "seed.img", serial_log=placeholder / "serial.log",
            qmp_socket=placeholder / "qmp.sock", pidfile=placeholder / "qemu.pid",
            kernel=image.directory / "vmlinuz", initrd=(variant.directory if variant else image.directory) / "initrd.img",
            hypervisor=(image.directory / "xen.elf") if host.role == "xen" else None,
            data_disks=tuple(placeholder / f"data-{name}.qcow2" for name, _ in host.plan.data_disks),
            firmware_vars=placeholder / "OVMF_VARS.fd" if host.plan.hardware.firmware == "uefi" else None)
        sockets = {n.network: Path("/net") / n.network for n in host.plan.nics}
        machines[host.name] = qemu_argv(host.plan, files, choice, 0, sockets)
    sources = {name: hashlib.sha256((PACKAGE / name).read_bytes()).hexdigest() for name in BOOT_SOURCES}
    material = {
        "format": WARM_FORMAT, "spec": lab.spec.model_dump(mode="json"),
        # an image rebuilt under the same recipe (`images build --force`) is another disk under
        # the state's overlays: its build time is part of the key
        "images": {name: [image.digest, image.built_at] for name, image in sorted(built.items())},
        "accel": [choice.accel, choice.cpu], "qemu": qemu_version(), "argv": machines, "sources": sources,
    }
    return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()


def archive_key(specs: list, images_key: str) -> str:
    """The key under which CI keeps the warm-state cache of these labs (`xenlab cache key labs`):
    the images it rests on (their key), the lab specs, QEMU's version and the xenlab sources
    `warm_key` reads. Coarser than `warm_key` (which also needs the built images' times, known
    only once they exist): it picks which archive to restore; `Lab.up` still checks each
    state's own key, so a state that no longer fits is booted anew, never served."""
    sources = {name: hashlib.sha256((PACKAGE / name).read_bytes()).hexdigest() for name in BOOT_SOURCES}
    material = {"format": WARM_FORMAT, "images": images_key, "qemu": qemu_version(), "sources": sources,
                "labs": sorted((spec.model_dump(mode="json") for spec in specs), key=lambda d: d["name"])}
    return "xenlab-labs-" + hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()[:20]


@dataclass(frozen=True)
class WarmEntry:
    """One lab state in the cache."""

    dir: Path
    manifest: dict

    @property
    def key(self) -> str:
        return str(self.manifest.get("key", ""))

    @property
    def lab(self) -> str:
        return str(self.manifest.get("lab", "?"))

    @property
    def created_at(self) -> float:
        return float(self.manifest.get("created_at", 0.0))

    @property
    def last_used(self) -> float:
        used = self.dir / "last-used"
        return used.stat().st_mtime if used.exists() else self.created_at

    @property
    def state_bytes(self) -> int:
        return int(self.manifest.get("state_bytes", 0))

    def machine(self, name: str) -> dict:
        try:
            return self.manifest["machines"][name]
        except KeyError:
            raise XenlabError(f"warm state {self.dir} has no machine {name!r}") from None

    def seed(self, name: str) -> Path:
        return self.dir / f"{name}.seed.img"

    def serial_log(self, name: str) -> Path:
        """The machine's console up to the moment its state was kept (may be missing)."""
        return self.dir / f"{name}.serial.log"

    def size_bytes(self) -> int:
        return _disk_usage(self.dir)

    def problems(self) -> list[str]:
        """What makes this entry unusable (files gone, images pruned): empty if none."""
        found = []
        for name, machine in self.manifest.get("machines", {}).items():
            wanted = [f"{name}-{drive}.qcow2" for drive in machine.get("drives", [])]
            wanted += [f"{name}.vmstate", f"{name}.seed.img"]
            found += [f"{self.dir / f} is missing" for f in wanted if not (self.dir / f).exists()]
        found += [f"{self.dir / 'keys' / f} is missing" for f in KEY_FILES if not (self.dir / "keys" / f).exists()]
        found += [f"image {path} is gone" for path in self.manifest.get("image_dirs", []) if not Path(path).is_dir()]
        return found


class WarmCache:
    """The lab states kept under `cache_root()` (0700), one directory per lab and key."""

    def __init__(self, root: Path | None = None):
        self.root = root or cache_root()

    def path_for(self, lab: str, key: str) -> Path:
        return self.root / f"{lab}-{key[:16]}"

    def lookup(self, lab: str, key: str) -> WarmEntry | None:
        """The usable entry of `lab` under `key`; a broken one is removed (and None)."""
        entry = self._read(self.path_for(lab, key))
        if entry is None or entry.key != key or entry.manifest.get("format") != WARM_FORMAT:
            return None
        if entry.problems():
            self.discard(entry)
            return None
        return entry

    def _read(self, directory: Path) -> WarmEntry | None:
        try:
            manifest = json.loads((directory / "manifest.json").read_text())
        except (OSError, ValueError):
            return None
        return WarmEntry(directory, manifest) if isinstance(manifest, dict) else None

    def capture(self, lab: Lab, key: str, layer_dir: Path, state_bytes: int) -> WarmEntry:
        """Keep `lab`'s checkpoint in `layer_dir` as its warm state (hard links where the
        cache is on the same file system, copies otherwise)."""
        final = self.path_for(lab.name, key)
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        staging = final.with_name(final.name + f".partial-{os.getpid()}")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(mode=0o700)
        try:
            for item in sorted(layer_dir.iterdir()):
                _link_or_copy(item, staging / item.name)
            (staging / "keys").mkdir(mode=0o700)
            keys = lab.run.root / "keys"
            for name in KEY_FILES + tuple(f"host-{h}{s}" for h in lab.machines for s in ("", ".pub")):
                shutil.copyfile(keys / name, staging / "keys" / name)
                os.chmod(staging / "keys" / name, 0o600)
            machines = {}
            for host in lab.machines.values():
                machine = lab.state.machines[host.name]
                shutil.copyfile(host.dir / "seed.img", staging / f"{host.name}.seed.img")
                if host.serial_log.exists():  # the boot a warm machine never repeats, for `xenlab console`
                    shutil.copyfile(host.serial_log, staging / f"{host.name}.serial.log")
                drives = sorted(p.name[len(host.name) + 1:-len(".qcow2")] for p in layer_dir.glob(f"{host.name}-*.qcow2"))
                machines[host.name] = {"drives": drives, "virt_caps": machine.virt_caps}
            manifest = {
                "format": WARM_FORMAT, "key": key, "lab": lab.name, "spec_path": lab.spec_path,
                "created_at": time.time(), "accel": lab.state.accel, "cpu": lab.state.cpu,
                "image_dirs": sorted({lab.state.machines[h].image_dir for h in lab.machines}),
                "machines": machines, "state_bytes": state_bytes,
            }
            (staging / "manifest.json").write_text(json.dumps(manifest, indent=2))
            kept = self.lookup(lab.name, key)
            if kept is not None:  # another lab of the same key kept one meanwhile (`pytest -n 2`): keep that
                shutil.rmtree(staging, ignore_errors=True)
                return kept
            if final.exists() and final not in self.in_use():
                shutil.rmtree(final)
            staging.rename(final)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        entry = self._read(final)
        assert entry is not None
        return entry

    def touch(self, entry: WarmEntry) -> None:
        (entry.dir / "last-used").touch()

    def discard(self, entry: WarmEntry) -> None:
        shutil.rmtree(entry.dir, ignore_errors=True)

    def entries(self) -> list[WarmEntry]:
        if not self.root.is_dir():
            return []
        found = [self._read(d) for d in sorted(self.root.iterdir()) if d.is_dir() and ".partial-" not in d.name]
        return [e for e in found if e is not None]

    def in_use(self) -> set[Path]:
        """Entries the machines of a lab that is up rest on (never removed under it)."""
        used = set()
        base = runs_base()
        for run_dir in base.iterdir():
            run = RunDir(run_dir)
            if not run.exists():
                continue
            try:
                state = run.read_state()
            except XenlabError:
                continue
            used |= {Path(layer.dir) for layer in state.layers if layer.cached}
        return used

    def forget(self, lab: str) -> list[WarmEntry]:
        """Remove every state of `lab` that no running lab rests on."""
        used = self.in_use()
        gone = [e for e in self.entries() if e.lab == lab and e.dir not in used]
        for entry in gone:
            self.discard(entry)
        return gone

    def prune(self, limit_bytes: int | None = None) -> list[Path]:
        """Remove unfinished and unusable entries, then the least recently used ones until
        the rest fit in `limit_bytes` (default: `cache_limit_bytes()`); entries in use stay."""
        limit = cache_limit_bytes() if limit_bytes is None else limit_bytes
        if not self.root.is_dir():
            return []
        used = self.in_use()
        removed: list[Path] = []
        for directory in sorted(self.root.iterdir()):
            entry = self._read(directory) if ".partial-" not in directory.name else None
            partial_alive = ".partial-" in directory.name and _pid_alive(directory.name.rsplit("-", 1)[-1])
            broken = entry is None or entry.manifest.get("format") != WARM_FORMAT or bool(entry.problems())
            if directory.is_dir() and broken and not partial_alive and directory not in used:
                shutil.rmtree(directory, ignore_errors=True)
                removed.append(directory)
        kept = sorted(self.entries(), key=lambda e: e.last_used)
        total = sum(e.size_bytes() for e in kept)
        for entry in kept:
            if total <= limit:
                break
            if entry.dir in used:
                continue
            total -= entry.size_bytes()
            self.discard(entry)
            removed.append(entry.dir)
        return removed


def _pid_alive(text: str) -> bool:
    try:
        os.kill(int(text), 0)
    except (ValueError, ProcessLookupError):
        return False
    except PermissionError:
        return True
    return True


def _link_or_copy(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError:  # another file system: a sparse copy
        subprocess.run(["cp", "--sparse=always", str(source), str(target)], check=True)


def _disk_usage(directory: Path) -> int:
    """Bytes the files take on disk (sparse files count what they hold)."""
    total = 0
    for path in directory.rglob("*"):
        try:
            st = path.stat()
        except OSError:
            continue
        if path.is_file():
            total += st.st_blocks * 512
    return total
