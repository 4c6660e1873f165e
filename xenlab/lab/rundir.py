"""The run directory of a lab (0700): state, keys, sockets, overlays and logs.

`state.json` is the lab's memory between CLI commands: which machines run where, on
which ports, with which pids and checkpoints. It is written atomically.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..errors import XenlabError
from .processes import process_start


def default_runs_base() -> Path:
    return Path(f"/tmp/xenlab-{os.getuid()}")


def runs_base() -> Path:
    env = os.environ.get("XENLAB_RUN_DIR")
    return private_dir(Path(env) if env else default_runs_base())


def private_dir(path: Path) -> Path:
    """`path`, made 0700 if it is new; an existing one is used only if it is a real directory
    (not followed if a symlink: lstat), owned by this user and of mode 0700. A run directory
    holds a lab's keys, QMP sockets and state: one made in advance by another local user in
    the shared /tmp (or opened to others) could hand them over, so it is refused, not repaired."""
    try:
        path.mkdir(mode=0o700, parents=True)
        os.chmod(path, 0o700)  # the umask may have narrowed it
    except FileExistsError:
        pass
    st = os.lstat(path)
    me = os.getuid()
    own = "set XENLAB_RUN_DIR to a directory of your own (it is made 0700 if it does not exist)"
    if stat.S_ISLNK(st.st_mode):
        raise XenlabError(f"run directory {path} is a symbolic link: xenlab keeps keys and sockets there and "
                          f"does not follow links; remove it or {own}")
    if not stat.S_ISDIR(st.st_mode):
        raise XenlabError(f"run directory {path} is not a directory; remove it or {own}")
    if st.st_uid != me:
        raise XenlabError(f"run directory {path} belongs to uid {st.st_uid}, not to you (uid {me}): another user "
                          f"may have made it to reach your labs' keys and sockets; have it removed (by its owner "
                          f"or root) or {own}")
    mode = stat.S_IMODE(st.st_mode)
    if mode != 0o700:
        raise XenlabError(f"run directory {path} has mode {mode:04o}, not 0700: others may have put files in it; "
                          f"if you trust what it holds, `chmod 700 {path}`, otherwise remove it or {own}")
    return path


# -- run bases elsewhere (a test session's own), and who owns them ------------------------
OWNER_FILE = "owner.json"
ELSEWHERE = "elsewhere"  # in the default base: one file per run base claimed elsewhere


def listing_entry(base: Path) -> Path:
    """Where the default base lists run base `base` (named by a hash of its path)."""
    return default_runs_base() / ELSEWHERE / hashlib.sha256(str(base.resolve()).encode()).hexdigest()[:16]


def claim_run_base(base: Path) -> None:
    """Make this process the owner of run base `base` (a test session's private one) and
    list it where `xenlab down --all` and later sessions look for what a dead owner left."""
    private_dir(base)
    owner = {"pid": os.getpid(), "started": process_start(os.getpid())}
    (base / OWNER_FILE).write_text(json.dumps(owner) + "\n")
    entry = listing_entry(base)
    private_dir(entry.parent.parent)
    private_dir(entry.parent)
    entry.write_text(str(base.resolve()) + "\n")


def abandoned_run_bases() -> list[Path]:
    """Claimed run bases whose owner has died (its processes, if any, are nobody's now).
    Listings of run bases that no longer exist are dropped on the way."""
    listing = default_runs_base() / ELSEWHERE
    abandoned = []
    if listing.is_dir():
        private_dir(default_runs_base())
        private_dir(listing)  # its entries name directories whose processes get stopped
    for entry in sorted(listing.iterdir()) if listing.is_dir() else ():
        base = Path(entry.read_text().strip())
        try:
            owner = json.loads((base / OWNER_FILE).read_text())
        except (OSError, ValueError):
            if not base.exists():
                entry.unlink(missing_ok=True)
            continue
        pid, started = owner.get("pid"), owner.get("started")
        if isinstance(pid, int) and started is not None and process_start(pid) == started:
            continue  # its owner still runs
        abandoned.append(base)
    return abandoned


def release_run_base(base: Path) -> None:
    """Forget the listing of `base` (its owner is done with it)."""
    listing_entry(base).unlink(missing_ok=True)


@dataclass
class MachineState:
    ssh_port: int
    image_dir: str
    pid: int | None = None
    started_at: float | None = None
    argv: list[str] = field(default_factory=list)
    powered: bool = True
    virt_caps: list[str] = field(default_factory=list)  # `xl info` virt_caps, read when it was ready
    tops: dict[str, str] = field(default_factory=dict)  # drive id -> the qcow2 it writes now (after a checkpoint)
    variant_dir: str = ""  # its image's hardware variant (images/variant.py), if its hardware needs one


@dataclass
class CheckpointState:
    tag: str
    created_at: float
    save_seconds: float
    layer: str = ""  # the LayerState holding it
    state_bytes: int = 0  # RAM and device state of every machine, saved


@dataclass
class LayerState:
    """A set of frozen disk layers and saved machine states (see `lab.layers`)."""

    id: str
    dir: str  # in the run directory, or a warm state in the cache (not ours to delete)
    parent: str | None  # the layer its disks are backed by; None: the golden images
    created_at: float
    cached: bool = False  # a warm state of the cache


@dataclass
class LabState:
    lab: str
    spec_path: str
    spec: dict
    accel: str
    cpu: str
    accel_reason: str
    created_at: float
    tied_to_pid: int | None
    machines: dict[str, MachineState] = field(default_factory=dict)
    switches: dict[str, int] = field(default_factory=dict)  # core and access switches, wirefilters
    checkpoints: list[CheckpointState] = field(default_factory=list)
    ready_at: float | None = None
    layers: list[LayerState] = field(default_factory=list)
    top_parent: str | None = None  # the layer every machine's writable disks are backed by now
    warm_key: str | None = None  # the key of the lab's warm state in the cache (see `lab.warm`)
    came_up: str = "cold"  # cold (booted) or warm (restored from the cache)

    @classmethod
    def from_json(cls, data: dict) -> LabState:
        data = dict(data)
        data["machines"] = {k: MachineState(**v) for k, v in data.get("machines", {}).items()}
        data["checkpoints"] = [CheckpointState(**c) for c in data.get("checkpoints", [])]
        data["layers"] = [LayerState(**layer) for layer in data.get("layers", [])]
        return cls(**data)


StateStamp = tuple[int, int, int]


def _stamp(st: os.stat_result) -> StateStamp:
    return (st.st_ino, st.st_mtime_ns, st.st_size)


class RunDir:
    def __init__(self, root: Path):
        self.root = root

    @classmethod
    def for_lab(cls, lab: str, base: Path | None = None) -> RunDir:
        return cls((base or runs_base()) / lab)

    def create(self) -> None:
        private_dir(self.root.parent)
        private_dir(self.root)
        for sub in ("keys", "net", "machines", "logs", "layers"):
            (self.root / sub).mkdir(mode=0o700, exist_ok=True)

    @property
    def marker(self) -> str:
        """A string present in the command line of every process this lab starts."""
        return str(self.root) + "/"

    @property
    def state_path(self) -> Path:
        return self.root / "state.json"

    def machine_dir(self, name: str) -> Path:
        path = self.root / "machines" / name
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        return path

    def network_socket(self, network: str) -> Path:
        return self.root / "net" / f"{network}.vde"

    def access_socket(self, network: str, machine: str) -> Path:
        """The switch one machine's NIC plugs into; a wirefilter joins it to the network."""
        return self.root / "net" / f"{network}-{machine}.vde"

    def filter_socket(self, network: str, machine: str) -> Path:
        return self.root / "net" / f"{network}-{machine}.wf"

    def exists(self) -> bool:
        return self.state_path.exists()

    def read_state(self) -> LabState:
        return self.read_state_stamped()[0]

    def read_state_stamped(self) -> tuple[LabState, StateStamp]:
        """The state and the stamp of the file it was read from (see `state_stamp`)."""
        try:
            with open(self.state_path) as f:
                stamp = _stamp(os.fstat(f.fileno()))
                return LabState.from_json(json.loads(f.read())), stamp
        except FileNotFoundError:
            raise XenlabError(f"lab {self.root.name!r} is not up (no {self.state_path})") from None
        except (ValueError, TypeError) as exc:
            raise XenlabError(f"{self.state_path} is damaged ({exc}); `xenlab down {self.root.name}` cleans it up") from None

    def state_stamp(self) -> StateStamp | None:
        """What changes whenever state.json is written (by this process or another xenlab
        command): a lab object re-reads its state when the stamp is not the one it knows."""
        try:
            return _stamp(self.state_path.stat())
        except FileNotFoundError:
            return None

    def write_state(self, state: LabState) -> StateStamp:
        tmp = self.state_path.with_suffix(f".tmp-{os.getpid()}-{threading.get_ident()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(asdict(state), f, indent=2)
            f.flush()
            stamp = _stamp(os.fstat(f.fileno()))
        tmp.replace(self.state_path)
        return stamp
