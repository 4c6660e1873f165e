"""One lab machine (a nested Xen host or the services node) as the user sees it."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import XenlabError
from ..images.identity import NETWORK_REPAIR_COMMAND, network_ready_command
from ..plan import MachinePlan
from ..waiting import StopWaiting, wait_for
from .accel import AccelChoice
from .contract import AWAITING
from .ports import hostfwd_refused, reserve_port
from .qemu import MachineFiles, Monitor, QemuProcess, qemu_argv
from .ssh import RemoteShell, SSHAccess

if TYPE_CHECKING:
    from .lab import Lab

# Exit statuses of the readiness command: its toolstack check failed; the toolstack
# answered but a lab NIC is not up with its address yet.
TOOLSTACK_NOT_READY, NETWORK_NOT_READY = 3, 4
# What each role prints on its serial console early in every boot, whatever the log level.
BOOT_MARKERS = {"xen": "Xen version", "services": "Welcome to"}
FATAL_MARKERS = ("Panic on CPU", "Kernel panic", "Hardware Dom0 crashed", "FATAL TRAP")
POWER_ACTIONS = ("off", "on", "reset", "freeze", "thaw")
PORT_ATTEMPTS = 5  # QEMU started again on another SSH port when its own was taken meanwhile


def parse_virt_caps(xl_info: str) -> list[str]:
    """The words of `xl info`'s virt_caps line (`pv hvm shadow`, `pv hvm hap ...`)."""
    for line in xl_info.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() == "virt_caps":
            return value.split()
    return []


# Before the toolstack check, wait (in the machine, for at most 10 s at a time) until
# systemd has finished starting up: polling `xl info` every second while the machine
# still boots cost its one vCPU ~0.4 s a poll under TCG, a third of the boot's last half
# minute. `;`: a degraded system still gets the check, which says what is wrong.
BOOT_SETTLED = "timeout 10 systemctl is-system-running --wait >/dev/null 2>&1; "


class Host(RemoteShell):
    """Run commands, read the console, and control power and links of one machine."""

    capabilities = frozenset({"shell", "power", "console", "link"})

    def __init__(self, lab: Lab, plan: MachinePlan):
        self.lab = lab
        self.plan = plan
        self.name = plan.name
        self.role = plan.role
        self._ssh: SSHAccess | None = None
        self._process: QemuProcess | None = None

    def __repr__(self) -> str:
        return f"<Host {self.name} of lab {self.lab.name}>"

    # -- files and state -------------------------------------------------------------
    @property
    def dir(self) -> Path:
        return self.lab.run.machine_dir(self.name)

    @property
    def serial_log(self) -> Path:
        return self.dir / "serial.log"

    @property
    def qmp_socket(self) -> Path:
        return self.dir / "qmp.sock"

    def files(self, image_dir: Path) -> MachineFiles:
        """The machine's files; its writable disks are the tops it writes now (a checkpoint
        gives each a new top, under a new name: see `lab.layers`)."""
        machine = self.lab.state.machines.get(self.name) if self.lab.run.exists() else None
        tops = machine.tops if machine else {}
        variant = Path(machine.variant_dir) if machine and machine.variant_dir else None
        return MachineFiles(
            overlay=Path(tops.get("root", self.dir / "root.qcow2")), seed=self.dir / "seed.img",
            serial_log=self.serial_log, qmp_socket=self.qmp_socket, pidfile=self.dir / "qemu.pid",
            kernel=image_dir / "vmlinuz", initrd=(variant or image_dir) / "initrd.img",
            hypervisor=(image_dir / "xen.elf") if self.role == "xen" else None,
            data_disks=tuple(Path(tops.get(f"data{i}", self.dir / f"data-{name}.qcow2"))
                             for i, (name, _) in enumerate(self.plan.data_disks)),
            firmware_vars=self.firmware_vars,
        )

    @property
    def firmware_vars(self) -> Path | None:
        """A UEFI host's own copy of OVMF_VARS (its firmware's NVRAM), in its run directory."""
        return self.dir / "OVMF_VARS.fd" if self.plan.hardware.firmware == "uefi" else None

    @property
    def state(self):
        return self.lab.state.machines[self.name]

    @property
    def ssh_port(self) -> int:
        return self.state.ssh_port

    @property
    def process(self) -> QemuProcess:
        """This machine's QEMU process (the one it runs now, or the last one recorded)."""
        recorded = self.state.pid
        if self._process is None:
            files = self.files(Path(self.state.image_dir))
            self._process = QemuProcess(self.name, files, self.dir / "qemu.log", self.lab.run.marker, recorded)
        elif self._process.pid != recorded:
            self._process.follow(recorded)  # another xenlab command restarted it meanwhile
        return self._process

    def reap(self) -> None:
        """After `down`: collect the exit status of a QEMU this object started, forget it."""
        if self._process is not None:
            self._process.reap()
        self._process = None

    def process_alive(self) -> bool:
        return self.process.alive()

    def bmc_tunnels(self) -> str:
        """A Xen host's way to the lab's BMCs (lab/bmc_relay.py), for a lab with `bmc: ipmi`."""
        from .bmc_relay import guestfwd_options

        routes = self.lab.bmc_routes()
        return guestfwd_options(self.lab.run.root, routes) if routes and self.role == "xen" else ""

    def launch(self, tied: bool | None = None, paused: bool = False, loadvm: str | None = None,
               incoming: Path | None = None) -> None:
        """Start this machine's QEMU (power on, or a restore: -loadvm, or -incoming from a
        saved state file) and record it."""
        lab_state = self.lab.state
        state = lab_state.machines[self.name]
        files = self.files(Path(state.image_dir))
        sockets = {n.network: self.lab.run.access_socket(n.network, self.name) for n in self.plan.nics}
        choice = AccelChoice(lab_state.accel, lab_state.cpu, lab_state.accel_reason)
        argv = qemu_argv(self.plan, files, choice, state.ssh_port, sockets, start_paused=paused, loadvm=loadvm,
                         incoming=incoming, mgmt_extra=self.bmc_tunnels())
        if tied is None:
            # Tie a re-started QEMU (power on, restore) to the lab's owner only from the
            # owner itself: tied to another process (a CLI call, a nested pytest) it would
            # die when that process exits. Untied, `down` and the sweep still find it.
            tied = lab_state.tied_to_pid == os.getpid()
        self.forget_connections()
        for attempt in range(PORT_ATTEMPTS):
            try:
                pid = self.process.launch(argv, tied)
                break
            except XenlabError as exc:
                if attempt + 1 == PORT_ATTEMPTS or not hostfwd_refused(str(exc), state.ssh_port):
                    raise
            # something took the SSH port since it was chosen: another port, pinned anew
            self._move_ssh_port(reserve_port(self.lab.run.root))
            argv = qemu_argv(self.plan, files, choice, state.ssh_port, sockets, start_paused=paused, loadvm=loadvm,
                             incoming=incoming, mgmt_extra=self.bmc_tunnels())
        state.pid, state.started_at, state.argv, state.powered = pid, time.time(), argv, True
        self.lab.save_state()

    def _move_ssh_port(self, port: int) -> None:
        """Forward SSH from `port` from now on: the state and the lab's known_hosts follow."""
        known = self.lab.run.root / "keys" / "known_hosts"
        old = f"[127.0.0.1]:{self.state.ssh_port} "
        lines = known.read_text().splitlines() if known.exists() else []
        public = " ".join((self.lab.run.root / "keys" / f"host-{self.name}.pub").read_text().split()[:2])
        lines = [line for line in lines if not line.startswith(old)] + [f"[127.0.0.1]:{port} {public}"]
        known.write_text("\n".join(lines) + "\n")
        self.state.ssh_port = port
        self.lab.save_state()

    def power_off(self) -> None:
        """QEMU quits (the machine's power is cut); its overlay keeps every checkpoint."""
        self.forget_connections()
        self.process.quit()

    def ssh_argv(self, *command: str) -> list[str]:
        """The system `ssh` client's command line to this machine (an interactive shell, or
        raw commands timed without xenlab in the way), with the lab's key and pinned host key."""
        keys = self.lab.run.root / "keys"
        return ["ssh", "-i", str(keys / "id_ed25519"), "-p", str(self.ssh_port), "-o", "IdentitiesOnly=yes",
                "-o", f"UserKnownHostsFile={keys / 'known_hosts'}", "-o", "StrictHostKeyChecking=yes",
                "-o", "BatchMode=yes" if command else "BatchMode=no", "root@127.0.0.1", *command]

    def address(self, network: str | None = None) -> str:
        network = network or self.plan.nics[0].network
        return str(self.plan.address_on(network))

    # -- console ---------------------------------------------------------------------
    def serial_tail(self, lines: int = 20) -> str:
        try:
            with open(self.serial_log, "rb") as f:
                f.seek(0, 2)
                f.seek(max(0, f.tell() - 64 * 1024))
                text = f.read().decode(errors="replace")
        except FileNotFoundError:
            return "(no serial log yet)"
        return "\n".join(text.replace("\r", "").splitlines()[-lines:])

    def serial_contains(self, marker: str) -> bool:
        try:
            return marker.encode() in self.serial_log.read_bytes()
        except FileNotFoundError:
            return False

    # -- commands --------------------------------------------------------------------
    @property
    def ssh(self) -> SSHAccess:
        if self._ssh is None or self._ssh.port != self.ssh_port:
            keys = self.lab.run.root / "keys"
            self._ssh = SSHAccess(self.name, self.ssh_port, str(keys / "id_ed25519"),
                                  (keys / f"host-{self.name}.pub").read_text().strip())
        return self._ssh

    def close(self) -> None:
        self.forget_connections()

    # -- readiness -------------------------------------------------------------------
    def _alive_or_stop(self) -> None:
        if not self.process_alive():
            raise StopWaiting(f"the QEMU process of {self.name} is gone (see {self.dir / 'qemu.log'})")
        text = self.serial_tail(200)
        for marker in FATAL_MARKERS:
            if marker in text:
                raise StopWaiting(f"{self.name} crashed at boot ({marker!r} on its console)")

    def _evidence(self) -> str:
        return f"{self.name}: last serial lines ({self.serial_log}):\n{self.serial_tail(15)}"

    def wait_booted(self, timeout: float) -> None:
        marker = BOOT_MARKERS[self.role]

        def booted() -> bool:
            self._alive_or_stop()
            return self.serial_contains(marker)

        wait_for(booted, f"{self.name}: stage boot ({marker!r} on the serial console)", timeout, 0.25, self._evidence)

    def wait_ssh(self, timeout: float, interval: float = 0.25) -> None:
        """Until sshd takes the lab's key. Polled as often as a person watching for the
        banner would (bench/bringup.py's raw boot polls every 0.25 s): an attempt before
        sshd listens is refused by QEMU's port forward at once and costs the machine nothing."""

        def answers() -> bool:
            """sshd answers and takes the lab's key: no command needed (a session's first
            command costs another half second under TCG; the toolstack stage runs one)."""
            self._alive_or_stop()
            self.ssh.client(timeout=10)
            return True

        wait_for(answers, f"{self.name}: stage ssh (127.0.0.1:{self.ssh_port})", timeout, interval, self._evidence)

    def toolstack_check(self) -> str:
        return "xl info" if self.role == "xen" else "systemctl is-active nfs-server"

    def wait_toolstack(self, timeout: float, restored: bool = False) -> None:
        """Until the toolstack check passes and the lab NICs are up with their addresses.
        A `restored` machine (resumed from a state saved once it was ready) first gets its
        clock set to this machine's in the same command (it resumes at its saved time) and
        does not wait for systemd to settle: it had settled before its state was saved, and
        that wait costs a freshly restored TCG machine half a second. A lab network still
        down 20 s after the toolstack answers gets networkd restarted (at most every 30 s),
        and the repairs are logged in the evidence."""
        check = self.toolstack_check()
        network = network_ready_command(self.plan)
        last: list[str] = [""]
        network_down_since: list[float | None] = [None]
        repairs: list[float] = []

        def works() -> bool:
            self._alive_or_stop()
            before = f"date -s @{time.time():.3f} >/dev/null && " if restored else BOOT_SETTLED
            # One command for the clock, the toolstack and the lab network: each SSH command
            # costs a TCG machine a few tenths of a second.
            result = self.ssh.run(f"{before}{check} || exit {TOOLSTACK_NOT_READY}; "
                                  f"{{ {network}; }} >/dev/null 2>&1 || exit {NETWORK_NOT_READY}", timeout=30)
            last[0] = (result.stdout + result.stderr)[-800:]
            if result.status not in (0, NETWORK_NOT_READY):
                return False
            if self.role == "xen":
                # What Xen offers guests here (pv, hvm, hap or shadow): kept for status and doctor.
                self.state.virt_caps = parse_virt_caps(result.stdout)
            if result.ok:
                return True
            now = time.monotonic()
            since = network_down_since[0] = network_down_since[0] or now
            links = self.ssh.run("ip -br link; ip -br -4 addr", timeout=30).stdout
            last[0] = f"the lab network is not up yet:\n{links}"
            if now - since >= 20 and (not repairs or now - repairs[-1] >= 30):
                repairs.append(now)
                self.ssh.run(NETWORK_REPAIR_COMMAND, timeout=60)
                last[0] += f"\n(networkd restarted {len(repairs)} time(s))"
            return False

        wait_for(works, f"{self.name}: stage toolstack (`{check}`, then its lab network)", timeout, 1.0,
                 lambda: self._evidence() + f"\nlast `{check}` output:\n{last[0]}")

    def wait_ready(self, timeout: float = 300, progress=lambda host, stage: None) -> dict[str, float]:
        """Layered readiness: console banner, SSH, toolstack. Returns seconds per stage."""
        started = time.monotonic()
        deadline = started + timeout
        stages: dict[str, float] = {}
        for stage, waiter in (("boot", self.wait_booted), ("ssh", self.wait_ssh), ("toolstack", self.wait_toolstack)):
            progress(self.name, AWAITING[stage])
            waiter(max(1.0, deadline - time.monotonic()))
            stages[stage] = round(time.monotonic() - started, 2)
        progress(self.name, AWAITING["ready"])
        return stages

    # -- control ---------------------------------------------------------------------
    def monitor(self) -> Monitor:
        return Monitor(self.name, self.qmp_socket, self.dir / "qmp-events.jsonl")

    def power(self, action: str) -> None:
        """off (hard, like pulling the plug), on, reset, freeze (pause vCPUs), thaw."""
        if action not in POWER_ACTIONS:
            raise XenlabError(f"unknown power action {action!r} (one of {', '.join(POWER_ACTIONS)})")
        if action == "on":
            if self.process_alive():
                raise XenlabError(f"{self.name} is already on")
            self.launch()
            return
        if not self.process_alive():
            raise XenlabError(f"{self.name} is off; `xenlab power {self.name} on` first")
        if action == "off":
            self.power_off()
            self.state.powered = False
            self.lab.save_state()
        elif action == "reset":
            self.reset()
        elif action == "freeze":
            self.freeze()
        else:
            self.thaw()

    def reset(self) -> None:
        """The reset button: the machine reboots at once."""
        self.forget_connections()
        self._qmp("system_reset")

    def freeze(self) -> None:
        """Pause every vCPU (the machine is alive but does nothing)."""
        self._qmp("stop")

    def thaw(self) -> None:
        self._qmp("cont")

    def _qmp(self, command: str) -> None:
        with self.monitor() as qmp:
            qmp.command(command)

    def link(self, network: str, up: bool) -> None:
        """Carrier up/down on this machine's NIC on `network` (the guest sees a cable pulled)."""
        if network not in (n.network for n in self.plan.nics) and network != "mgmt":
            known = ", ".join([n.network for n in self.plan.nics] + ["mgmt"])
            raise XenlabError(f"{self.name} has no nic on network {network!r} (nics: {known})")
        with self.monitor() as qmp:
            qmp.command("set_link", name=f"nic-{network}", up=up)

    def run_state(self) -> str:
        """running, paused, off, or dead (process gone without `power off`)."""
        if not self.process_alive():
            return "off" if not self.state.powered else "dead"
        try:
            with self.monitor() as qmp:
                status = qmp.status()
        except XenlabError:
            return "unreachable"
        return {"running": "running", "paused": "paused", "prelaunch": "paused"}.get(status, status)
