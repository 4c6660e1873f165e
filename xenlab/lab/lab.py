"""The Lab: from a validated spec to running machines and back to nothing.

`up` either brings every machine to ready or stops everything it started; `down` stops
every process of the run directory (recorded or found by sweeping /proc) and removes it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time
from dataclasses import replace
from pathlib import Path

from ..errors import XenlabError
from ..images import ImageCache
from ..images.identity import generate_keypair, write_seed_disk
from ..images.variant import BuiltVariant
from ..plan import LabPlan, lab_number, plan_lab
from ..recipe_facts import DEFAULT_GUEST_TYPES, GUEST_TYPES, image_guest_types, runnable_guest_types
from ..report.inventory import collect_inventory
from ..results import HostInventory
from ..spec import LabSpec
from ..waiting import Progress, quiet
from .accel import AccelChoice, detect_accel
from .checkpoints import Checkpoints, monitor_do
from .contract import FAULT_KINDS, READY, Capabilities
from .host import Host
from .machine_hardware import boot_config, ensure_variants, prepare_firmware
from .network import WireFilter, start_switch, start_wirefilter
from .parallel import in_parallel
from .ports import release_ports, reserve_port
from .processes import alive, sweep
from .resources import check_fits, needed_mib, process_rss_mib
from .rundir import CheckpointState, LabState, LayerState, MachineState, RunDir, StateStamp, runs_base
from .user_xen import ensure_host_images, provenance, refuse_pvh_dom0_under_tcg
from .warm import WarmCache, WarmEntry, warm_enabled, warm_key

# Tools a QEMU lab runs (tool -> Debian package); `xenlab doctor` lists them too.
REQUIRED_TOOLS = {"qemu-system-x86_64": "qemu-system-x86", "qemu-img": "qemu-utils", "vde_switch": "vde2",
                  "wirefilter": "vde2", "mkfs.ext4": "e2fsprogs"}
QEMU_CAPABILITIES = Capabilities(toolstack="xl", fault_kinds=FAULT_KINDS, checkpoints=True,
                                 integrity_measurable=True, services_faults=True, poll_s=1.0)


class Lab(Checkpoints):
    """A lab of QEMU machines described by a LabSpec, living in its run directory (a LabBackend)."""

    @property
    def capabilities(self) -> Capabilities:
        """QEMU_CAPABILITIES, with the guest types every Xen host runs (see `runs`)."""
        runs = [self.runs(name) for name in self.spec.hosts]
        common = tuple(t for t in GUEST_TYPES if all(t in r for r in runs))
        return replace(QEMU_CAPABILITIES, guest_types=common)

    def runs(self, host: str) -> tuple[str, ...]:
        """Guest types `host` runs: those the lab file asks for that its image declares,
        narrowed by the virt_caps Xen reported when the host was ready (before a boot: the
        declarations alone)."""
        if self._declared_guest_types is None:
            self._declared_guest_types = image_guest_types()
        declared = self._declared_guest_types.get(self.spec.hosts[host].image, DEFAULT_GUEST_TYPES)
        wanted = tuple(t for t in self.spec.guest_types if t in declared)
        machine = self.state.machines.get(host) if self.run.exists() else None
        return runnable_guest_types(wanted, machine.virt_caps if machine else [])

    def __init__(self, spec: LabSpec, spec_path: str = "", run: RunDir | None = None):
        if spec.backend != "qemu":
            raise XenlabError(f"lab {spec.name} is a `backend: {spec.backend}` lab: it has no QEMU machines; "
                              f"`xenlab run SCENARIO --lab {spec_path or spec.name}` runs scenarios on it")
        self.spec = spec
        self.spec_path = spec_path
        self.name = spec.name
        self.plan: LabPlan = plan_lab(spec)
        self.run = run or RunDir.for_lab(spec.name)
        self.machines: dict[str, Host] = {m.name: Host(self, m) for m in self.plan.machines}
        self._state: LabState | None = None
        self._state_stamp: StateStamp | None = None
        self._declared_guest_types: dict[str, tuple[str, ...]] | None = None  # read from the recipes once
        self._switch_handles: list[subprocess.Popen] = []
        self._state_lock = threading.RLock()
        self.bringup_stages: dict[str, dict[str, float]] = {}
        self.variants: dict[str, BuiltVariant] = {}  # host -> its image's hardware variant (set by `up`)

    # -- lookup ----------------------------------------------------------------------
    @property
    def hosts(self) -> list[Host]:
        """The Xen hosts (not the services node), in lab-file order."""
        return [h for h in self.machines.values() if h.role == "xen"]

    @property
    def services(self) -> Host | None:
        return next((h for h in self.machines.values() if h.role == "services"), None)

    def host(self, name: str) -> Host:
        try:
            return self.machines[name]
        except KeyError:
            raise XenlabError(f"no host {name!r} in lab {self.name} (hosts: {', '.join(self.machines)})") from None

    @property
    def state(self) -> LabState:
        """The lab's state, re-read when another xenlab command (a CLI call, a nested
        pytest) wrote it since: a restore there starts new QEMU processes, and this
        object must follow them rather than report the machines off."""
        with self._state_lock:  # not between another thread's write and its stamp
            if self._state is None:
                self._state, self._state_stamp = self.run.read_state_stamped()
            else:
                stamp = self.run.state_stamp()
                if stamp is not None and stamp != self._state_stamp:
                    old_pids = {name: m.pid for name, m in self._state.machines.items()}
                    self._state, self._state_stamp = self.run.read_state_stamped()
                    for name, machine in self._state.machines.items():
                        if name in self.machines and machine.pid != old_pids.get(name):
                            self.machines[name].forget_connections()
            return self._state

    def save_state(self) -> None:
        assert self._state is not None
        with self._state_lock:  # machines are started and restored from parallel threads
            self._state_stamp = self.run.write_state(self._state)

    _save = save_state

    @property
    def accel(self) -> str:
        return self.state.accel

    def inventory(self) -> list[HostInventory]:
        """Each Xen host's inventory, asked from the host itself over SSH (in parallel)."""
        accel, cpu = self.state.accel, self.state.cpu
        return in_parallel(self.hosts, lambda host: collect_inventory(host, accel).model_copy(
            update={"hardware": host.plan.hardware.as_dict(cpu), **provenance(Path(host.state.image_dir))}))

    @property
    def base_dir(self) -> Path:
        """The lab file's directory: the paths it names are relative to it."""
        return Path(self.spec_path).resolve().parent if self.spec_path else Path.cwd()

    # -- up --------------------------------------------------------------------------
    def up(self, progress: Progress = quiet, accel: str | None = None, tied: bool = False,
           timeout: float = 600, images: ImageCache | None = None,
           warm: bool | None = None, cold: bool = False) -> dict[str, dict[str, float]]:
        """Build missing images, start switches and machines, wait until all are ready.

        warm (default: unless XENLAB_WARM=0): restore the lab's warm state from the cache
        when there is a valid one (`lab.warm`), else boot and keep the state for next time;
        either way the lab holds its `ready` checkpoint afterwards. A state that does not
        restore is discarded and the lab booted, saying why. cold: boot even if a warm state
        exists (and keep the new one).
        tied: the lab's processes die with this process (for test sessions).
        On any failure everything started is stopped again, and the error re-raised.
        """
        self._refuse_if_running()
        check_fits(self.plan, self.name)
        missing = [f"{tool} (Debian package {pkg})" for tool, pkg in REQUIRED_TOOLS.items() if not shutil.which(tool)]
        if missing:
            raise XenlabError("missing tools: " + ", ".join(missing) + "; run `xenlab doctor`")
        choice = detect_accel(accel or self.spec.accel, self.spec.nested_hvm)
        progress("lab", f"accel: {choice.accel} ({choice.reason})")
        refuse_pvh_dom0_under_tcg(self.plan, choice.accel)
        cache = images or ImageCache()
        built = cache.ensure_all([m.image for m in self.plan.machines], progress=progress)
        built.update(ensure_host_images(self.plan, built, cache, self.base_dir, progress))
        self.variants = ensure_variants(self.plan, built, progress)
        states = WarmCache() if (warm_enabled() if warm is None else warm) else None
        key = warm_key(self, choice, built, self.variants) if states else None
        entry = states.lookup(self.name, key) if states and key and not cold else None
        if states and entry:
            try:
                return self._up_warm(states, entry, choice, built, tied, timeout, progress)
            except (XenlabError, OSError, subprocess.CalledProcessError) as exc:
                progress("lab", f"warm state {entry.dir.name} did not restore ({exc}); discarded, booting")
                self._preserve_logs_on_failure()
                self.down()
                states.discard(entry)
        started = time.monotonic()
        try:
            self._start(choice, built, tied, progress)
            deadline = started + timeout

            def ready(host: Host) -> tuple[str, dict[str, float]]:
                return host.name, host.wait_ready(max(1.0, deadline - time.monotonic()),
                                                  lambda name, stage: progress(name, stage))

            self.bringup_stages = dict(in_parallel(self.machines.values(), ready))
        except BaseException:
            progress("lab", "bring-up failed: stopping everything that was started")
            self._preserve_logs_on_failure()
            self.down()
            raise
        self._state.ready_at = time.time()
        self._save()
        progress("lab", f"ready in {time.monotonic() - started:.1f}s")
        if states and key:
            self._keep_warm(states, key, progress)
        return self.bringup_stages

    def _keep_warm(self, states: WarmCache, key: str, progress: Progress) -> None:
        """Save `ready` and keep it in the cache; a failure here costs the next `up` a boot, nothing more."""
        seconds = self.checkpoint_save(READY)
        progress("lab", f"checkpoint {READY} saved in {seconds:.2f}s")
        checkpoint = next(c for c in self.state.checkpoints if c.tag == READY)
        try:
            entry = states.capture(self, key, Path(self._layer(checkpoint).dir), checkpoint.state_bytes)
            states.prune()
        except (OSError, XenlabError, subprocess.CalledProcessError) as exc:
            progress("lab", f"warm state not kept ({exc}): the next `up` boots again")
            return
        self.state.warm_key = key
        self._save()
        progress("lab", f"warm state kept ({entry.size_bytes() / (1 << 20):.0f} MiB in {entry.dir}); "
                        f"the next `up` of this lab restores it")

    def _up_warm(self, states: WarmCache, entry: WarmEntry, choice: AccelChoice, built: dict, tied: bool,
                 timeout: float, progress: Progress) -> dict[str, dict[str, float]]:
        """Every machine from the warm state: its keys, seeds and layers, its saved state loaded."""
        started = time.monotonic()
        progress("lab", f"restoring warm state {entry.dir.name} (kept {_age(entry.created_at)} ago)")
        self.run.create()
        self._state = self._new_state(choice, tied)
        self._state.came_up, self._state.warm_key = "warm", entry.key
        keys = self.run.root / "keys"
        for item in (entry.dir / "keys").iterdir():
            shutil.copyfile(item, keys / item.name)
            os.chmod(keys / item.name, 0o600)
        known_hosts = []
        for host in self.machines.values():
            port = reserve_port(self.run.root)
            self._state.machines[host.name] = MachineState(
                ssh_port=port, image_dir=str(built[host.plan.image_key].directory),
                virt_caps=list(entry.machine(host.name).get("virt_caps", [])), variant_dir=self._variant_dir(host))
            prepare_firmware(host.firmware_vars)
            public = (keys / f"host-{host.name}.pub").read_text().split()[:2]
            known_hosts.append(f"[127.0.0.1]:{port} {' '.join(public)}")
            shutil.copyfile(entry.seed(host.name), host.dir / "seed.img")
            with open(host.serial_log, "wb") as console:  # its console as booted, then where it resumed
                if entry.serial_log(host.name).exists():
                    console.write(entry.serial_log(host.name).read_bytes())
                console.write(f"\n--- xenlab: restored from warm state {entry.dir.name} "
                              f"(kept {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(entry.created_at))}) ---\n"
                              .encode())
        (keys / "known_hosts").write_text("\n".join(known_hosts) + "\n")
        layer = LayerState(f"warm-{entry.key[:12]}", str(entry.dir), None, entry.created_at, cached=True)
        self._state.layers = [layer]
        self._state.checkpoints = [CheckpointState(READY, entry.created_at, 0.0, layer.id, entry.state_bytes)]
        self._save()
        try:
            self._start_networks(tied)
            loaded = self._start_from(entry.dir)
            self._state.top_parent = layer.id
            self._save()
            self._start_bmcs(tied, progress)
            in_parallel(self.machines.values(), lambda h: monitor_do(h, "cont"))
            deadline = started + timeout

            def ready(host: Host) -> tuple[str, dict[str, float]]:
                stages = {"restore": loaded[host.name]}
                host.wait_ssh(max(1.0, deadline - time.monotonic()), interval=0.2)
                stages["ssh"] = round(time.monotonic() - started, 2)
                host.wait_toolstack(max(1.0, deadline - time.monotonic()), restored=True)
                stages["toolstack"] = round(time.monotonic() - started, 2)
                progress(host.name, "ready")
                return host.name, stages

            self.bringup_stages = dict(in_parallel(self.machines.values(), ready))
        except KeyboardInterrupt:
            self.down()
            raise
        except Exception as exc:
            if isinstance(exc, (XenlabError, OSError, subprocess.CalledProcessError)):
                raise
            raise XenlabError(str(exc)) from exc
        self._state.ready_at = time.time()
        self._save()
        states.touch(entry)
        progress("lab", f"ready in {time.monotonic() - started:.1f}s (warm)")
        return self.bringup_stages

    def _refuse_if_running(self) -> None:
        if self.run.exists():
            state = self.run.read_state()
            live = [n for n, m in state.machines.items() if alive(m.pid, self.run.marker)]
            if live:
                raise XenlabError(f"lab {self.name} is already up ({', '.join(live)} running); "
                                  f"`xenlab down {self.name}` first")
        # Anything left from a crashed run (recorded or not) goes before we start anew.
        sweep(self.run.root)
        if self.run.root.exists():
            shutil.rmtree(self.run.root)
        for other in running_labs():
            if other != self.name:
                try:
                    other_state = RunDir.for_lab(other).read_state()
                except XenlabError:
                    continue
                if lab_number(other_state.lab) == self.plan.number:
                    raise XenlabError(f"lab {self.name} shares its address plan with running lab {other}; rename one")

    def _start(self, choice: AccelChoice, built: dict, tied: bool, progress: Progress) -> None:
        self.run.create()
        self._state = self._new_state(choice, tied)
        keys = self.run.root / "keys"
        client = generate_keypair(keys / "id_ed25519", f"xenlab-{self.name}")
        known_hosts = []
        for host in self.machines.values():
            host_key = generate_keypair(keys / f"host-{host.name}", f"root@{host.name}")
            port = reserve_port(self.run.root)
            image = built[host.plan.image_key]
            variant = self.variants.get(host.name)
            self._state.machines[host.name] = MachineState(ssh_port=port, image_dir=str(image.directory),
                                                           variant_dir=self._variant_dir(host))
            known_hosts.append(f"[127.0.0.1]:{port} {' '.join(host_key.public_line.split()[:2])}")
            files = host.files(image.directory)
            backing = variant.disk if variant else image.disk
            subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", str(backing),
                            str(files.overlay)], check=True, capture_output=True)
            prepare_firmware(files.firmware_vars)
            for (disk_name, size), path in zip(host.plan.data_disks, files.data_disks):
                subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(path), f"{size}G"], check=True,
                               capture_output=True)
            export = self.spec.services.nfs_export if (self.spec.services and host.role == "services") else None
            write_seed_disk(files.seed, self.plan, host.plan, host_key, client, export, boot_config(host.plan))
        (keys / "known_hosts").write_text("\n".join(known_hosts) + "\n")
        self._save()
        self._start_networks(tied)
        for host in self.machines.values():
            progress(host.name, "starting QEMU")
            host.launch(tied)
        self._start_bmcs(tied, progress)

    def _variant_dir(self, host: Host) -> str:
        variant = self.variants.get(host.name)
        return str(variant.directory) if variant else ""

    def bmc_routes(self) -> dict:
        """How each Xen host's dom0 reaches every virtual BMC of the lab (lab/bmc_relay.py)."""
        from .bmc_relay import bmc_routes

        return bmc_routes([h.name for h in self.hosts if h.role == "xen" and self.spec.bmc_of(h.name) == "ipmi"])

    def _start_bmcs(self, tied: bool, progress: Progress) -> None:
        """A virtual BMC for each host whose lab file asks for one (`bmc: ipmi`), once its machine runs."""
        from .bmc import start_lab_bmcs  # not at the top: `python -m xenlab.lab.bmc` imports this package first

        for name, (pid, handle) in start_lab_bmcs(self, tied).items():
            progress(name, "virtual BMC (IPMI on 127.0.0.1) started")
            self._track(f"bmc/{name}", (pid, handle))

    def _new_state(self, choice: AccelChoice, tied: bool) -> LabState:
        return LabState(
            lab=self.name, spec_path=self.spec_path, spec=json.loads(self.spec.model_dump_json()),
            accel=choice.accel, cpu=choice.cpu, accel_reason=choice.reason, created_at=time.time(),
            tied_to_pid=os.getpid() if tied else None,
        )

    def _start_networks(self, tied: bool) -> None:
        logs = self.run.root / "logs"
        for network in self.plan.networks:
            # Core switch of the network; each machine NIC has its own access switch joined
            # to it through a wirefilter, where impairments and partitions are applied.
            self._track(network.name, start_switch(self.run.network_socket(network.name),
                                                   logs / f"switch-{network.name}.log", tied, record_in=self.run.root))
            for host in self.machines.values():
                if network.name not in [n.network for n in host.plan.nics]:
                    continue
                access = self.run.access_socket(network.name, host.name)
                self._track(f"{network.name}/{host.name}", start_switch(
                    access, logs / f"switch-{network.name}-{host.name}.log", tied, record_in=self.run.root))
                self._track(f"{network.name}/{host.name}/filter", start_wirefilter(
                    access, self.run.network_socket(network.name), self.run.filter_socket(network.name, host.name),
                    logs / f"filter-{network.name}-{host.name}.log", tied, record_in=self.run.root))

    def _track(self, name: str, started: tuple[int, subprocess.Popen | None]) -> None:
        pid, handle = started
        self._state.switches[name] = pid
        if handle is not None:
            self._switch_handles.append(handle)
        self._save()

    def wire(self, host: str, network: str) -> WireFilter:
        """The wirefilter between `host` and `network` (impairments, partitions)."""
        machine = self.host(host)
        if network not in [n.network for n in machine.plan.nics]:
            raise XenlabError(f"{host} has no nic on network {network!r}")
        return WireFilter(self.run.filter_socket(network, host), f"{host}/{network}")

    def _preserve_logs_on_failure(self) -> None:
        """Copy serial and QEMU logs out of the run directory before it is removed."""
        if not self.run.root.exists():
            return
        keep = runs_base() / f"{self.name}.failed-logs"
        shutil.rmtree(keep, ignore_errors=True)
        for host in self.machines.values():
            for name in ("serial.log", "qemu.log"):
                source = host.dir / name
                if source.exists():
                    (keep / host.name).mkdir(parents=True, exist_ok=True)
                    shutil.copy(source, keep / host.name / name)

    # -- down ------------------------------------------------------------------------
    def down(self) -> list[int]:
        """Stop every process of this lab and remove its run directory."""
        for host in self.machines.values():
            host.close()
        for handle in self._switch_handles:
            if handle.stdin:
                handle.stdin.close()
        stopped = sweep(self.run.root)  # every process it started, recorded by pid and start time
        release_ports(self.run.root)
        for handle in self._switch_handles:
            try:
                handle.wait(timeout=5)
            except subprocess.TimeoutExpired:
                handle.kill()
        self._switch_handles.clear()
        for host in self.machines.values():
            host.reap()
        if self.run.root.exists():
            shutil.rmtree(self.run.root, ignore_errors=True)
        self._state, self._state_stamp = None, None
        return sorted(set(stopped))

    # -- status ----------------------------------------------------------------------
    def status(self) -> dict:
        """Stable, documented shape (see docs/json-output.md)."""
        from .bmc import bmc_status  # see _start

        state = self.state
        now = time.time()
        machines = []
        for host in self.machines.values():
            m = state.machines[host.name]
            run_state = host.run_state()
            machines.append({
                "name": host.name, "role": host.role, "state": run_state,
                "pid": m.pid if run_state not in ("off", "dead") else None,
                "ssh": {"host": "127.0.0.1", "port": m.ssh_port},
                "addresses": {n.network: str(n.address.ip) for n in host.plan.nics},
                "macs": {n.network: n.mac for n in host.plan.nics},
                "uptime_seconds": round(now - m.started_at, 1) if m.started_at and run_state in ("running", "paused") else None,
                "memory_mib": host.plan.memory_mib, "vcpus": host.plan.vcpus,
                "rss_mib": _round1(process_rss_mib(m.pid) if run_state in ("running", "paused") else None),
                "serial_log": str(host.serial_log),
                "hardware": host.plan.hardware.as_dict(state.cpu),
                **({"virt_caps": m.virt_caps, "guest_types": list(self.runs(host.name)),
                    "xen": {"dom0_mode": host.plan.dom0_mode, **provenance(Path(m.image_dir))}}
                   if host.role == "xen" else {}),
                **({"bmc": bmc_status(self.run.root, host.name)} if self.spec.bmc_of(host.name) else {}),
            })
        return {
            "schema": "xenlab.status/1", "lab": self.name, "run_dir": str(self.run.root),
            "accel": state.accel, "cpu": state.cpu, "accel_reason": state.accel_reason,
            "networks": [{"name": n.name, "subnet": str(n.subnet), "socket": str(self.run.network_socket(n.name))}
                         for n in self.plan.networks],
            "machines": machines,
            "checkpoints": [{"tag": c.tag, "created_at": c.created_at, "save_seconds": c.save_seconds,
                             "state_bytes": c.state_bytes} for c in state.checkpoints],
            "came_up": state.came_up,  # cold (booted) or warm (restored from the cache)
            "memory": {"needed_mib": needed_mib(self.plan),
                       "rss_mib": _round1(sum(x["rss_mib"] or 0 for x in machines))},
            "warm_state": next((x.dir for x in state.layers if x.cached), None),
        }


def running_labs() -> list[str]:
    """Names of labs that have a run directory with state (up, or crashed and not cleaned)."""
    base = runs_base()
    return sorted(p.name for p in base.iterdir() if (p / "state.json").exists())


def attach_lab(name: str) -> Lab:
    """The Lab object of a lab brought up earlier (by another xenlab process)."""
    run = RunDir.for_lab(name)
    state = run.read_state()
    spec = LabSpec.model_validate(state.spec)
    return Lab(spec, state.spec_path, run)


def stray_lab_dirs() -> list[Path]:
    """Run directories without state (a crash before the first state write)."""
    base = runs_base()
    return sorted(p for p in base.iterdir() if p.is_dir() and not (p / "state.json").exists()
                  and not p.name.startswith(".") and not p.name.endswith((".failed-logs", ".static")))


def _age(at: float) -> str:
    seconds = max(0.0, time.time() - at)
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h" if seconds < 172800 else f"{seconds / 86400:.0f} days"


def _round1(value: float | None) -> float | None:
    return None if value is None else round(value, 1)
