"""QEMU command lines for lab machines (pure), and QMP access to a running one."""

from __future__ import annotations

import contextlib
import shlex
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Self

from qemu.qmp import ExecuteError
from qemu.qmp.legacy import QEMUMonitorProtocol

from ..errors import XenlabError
from ..hardware import NIC_DEVICES, Hardware
from ..plan import MachinePlan
from ..waiting import StopWaiting, wait_for
from .accel import AccelChoice
from .processes import alive, spawn

QEMU = "qemu-system-x86_64"


@dataclass(frozen=True)
class MachineFiles:
    """Where one machine's files live in the run directory, and what it boots."""

    overlay: Path
    seed: Path
    serial_log: Path
    qmp_socket: Path
    pidfile: Path
    kernel: Path
    initrd: Path
    hypervisor: Path | None  # Xen ELF for xen hosts, None for plain Linux machines
    data_disks: tuple[Path, ...] = ()
    firmware_vars: Path | None = None  # firmware uefi: this machine's copy of OVMF_VARS


OVMF_CODE = Path("/usr/share/OVMF/OVMF_CODE_4M.fd")  # Debian's ovmf, read-only pflash
OVMF_VARS = Path("/usr/share/OVMF/OVMF_VARS_4M.fd")  # the template each UEFI machine copies


def _escape_commas(text: str) -> str:
    return text.replace(",", ",,")


def dom0_cmdline(machine: MachinePlan) -> str:
    """xenlab's dom0 options, then the lab file's `xen.dom0.cmdline` (xen_spec.py refuses xenlab's own there)."""
    user = machine.xen.dom0.cmdline if machine.xen is not None and machine.xen.dom0 is not None else ""
    return " ".join([
        "root=LABEL=xlroot", "rw", "console=hvc0", "net.ifnames=0", "loglevel=4",
        f"systemd.machine_id={machine.machine_id}", f"systemd.hostname={machine.name}",
    ] + ([user] if user else []))


def linux_cmdline(machine: MachinePlan) -> str:
    return " ".join([
        "root=LABEL=xlroot", "rw", "console=ttyS0,115200", "net.ifnames=0", "loglevel=4",
        f"systemd.machine_id={machine.machine_id}", f"systemd.hostname={machine.name}",
        # No NFSv4 delegations: a dead host's delegation on a guest disk would block the
        # failover host's open until the dead client's lease expires (libxl gives up first).
        "sysctl.fs.leases-enable=0",
    ])


def xen_cmdline(machine: MachinePlan) -> str:
    """xenlab's Xen options (console, dom0 memory and vCPUs, dom0 mode), then the lab file's `xen.cmdline`."""
    dom0 = machine.dom0_memory_mib or 1024
    pvh = ["dom0=pvh", "dom0-iommu=none"] if machine.dom0_mode == "pvh" else []
    user = [machine.xen.cmdline] if machine.xen is not None and machine.xen.cmdline else []
    return " ".join([
        "console=com1", "com1=115200,8n1", f"dom0_mem={dom0}M,max:{dom0}M",
        f"dom0_max_vcpus={machine.vcpus}", "loglvl=all", "guest_loglvl=all", "noreboot", *pvh, *user,
    ])


def qemu_argv(
    machine: MachinePlan,
    files: MachineFiles,
    accel: AccelChoice,
    ssh_port: int,
    network_sockets: dict[str, Path],
    start_paused: bool = False,
    loadvm: str | None = None,
    incoming: Path | None = None,
    mgmt_extra: str = "",
) -> list[str]:
    """The full QEMU command line of one lab machine.

    Management NIC: user-mode, restricted (no route out), SSH forwarded from 127.0.0.1
    only (`mgmt_extra`: more options of it, the BMC tunnels of lab/bmc_relay.py). Lab NICs:
    vde unix sockets in the run directory. Never inet/multicast sockets.
    """
    hardware = machine.hardware
    argv = [
        QEMU, "-name", f"xenlab-{machine.name},debug-threads=on",
        "-machine", "q35", "-accel", accel.accel + (",thread=multi" if accel.accel == "tcg" else ""),
        "-cpu", hardware.cpu or accel.cpu, "-smp", str(machine.vcpus), "-m", str(machine.memory_mib),
        "-nodefaults", "-no-user-config", "-display", "none", "-vga", "none",
        "-chardev", f"file,id=serial0,path={files.serial_log},append=on", "-serial", "chardev:serial0",
        "-qmp", f"unix:{files.qmp_socket},server=on,wait=off",
        "-pidfile", str(files.pidfile),
    ]
    argv += boot_argv(machine, files)
    argv += ["-drive", f"file={files.overlay},if=none,id=root,format=qcow2,cache=unsafe,discard=unmap"]
    data = [("-drive", f"file={disk},if=none,id=data{index},format=qcow2,cache=unsafe")
            for index, disk in enumerate(files.data_disks)]
    if hardware.disk == "virtio-blk":
        argv += ["-device", "virtio-blk-pci,drive=root" + _bootindex(hardware)]
        argv += [
            "-drive", f"file={files.seed},if=none,id=seed,format=raw,readonly=on",
            "-device", "virtio-blk-pci,drive=seed" + _seed_bootindex(hardware),
        ]
        for index, (option, value) in enumerate(data):
            argv += [option, value, "-device", f"virtio-blk-pci,drive=data{index}"]
    else:
        for option, value in data:
            argv += [option, value]
        argv += disk_devices(hardware, len(data))
        argv += [
            "-drive", f"file={files.seed},if=none,id=seed,format=raw,readonly=on",
            "-device", "virtio-blk-pci,drive=seed" + _seed_bootindex(hardware),
        ]
    argv += [
        "-netdev", f"user,id=mgmt,restrict=on,hostfwd=tcp:127.0.0.1:{ssh_port}-:22{mgmt_extra}",
        "-device", f"virtio-net-pci,netdev=mgmt,id=nic-mgmt,mac={machine.mgmt_mac}",
    ]
    for nic in machine.nics:
        argv += [
            "-netdev", f"vde,id=net-{nic.network},sock={network_sockets[nic.network]}",
            "-device", f"{NIC_DEVICES[hardware.nic]},netdev=net-{nic.network},id=nic-{nic.network},mac={nic.mac}",
        ]
    if loadvm:
        argv += ["-loadvm", loadvm]
    if incoming is not None:
        # RAM and device state saved by `layers.save_state`; `cat` runs with the path in
        # its command line (a file of the run directory), so a sweep finds it too.
        argv += ["-incoming", f"exec:cat {shlex.quote(str(incoming))}"]
    if start_paused:
        argv.append("-S")
    return argv


def boot_argv(machine: MachinePlan, files: MachineFiles) -> list[str]:
    """How the machine boots: QEMU loads Xen (or Linux) itself (`direct`), or the firmware
    boots GRUB from the root disk (`bios`: SeaBIOS, QEMU's default; `uefi`: OVMF)."""
    firmware = machine.hardware.firmware
    if firmware == "uefi":
        if files.firmware_vars is None:
            raise XenlabError(f"{machine.name}: firmware uefi needs its own OVMF_VARS copy")
        return ["-drive", f"if=pflash,format=raw,unit=0,readonly=on,file={OVMF_CODE}",
                "-drive", f"if=pflash,format=raw,unit=1,file={files.firmware_vars}"]
    if firmware == "bios":
        return []
    if files.hypervisor is not None:
        return [
            "-kernel", str(files.hypervisor), "-append", xen_cmdline(machine),
            "-initrd", f"{_escape_commas(f'{files.kernel} {dom0_cmdline(machine)}')},{_escape_commas(str(files.initrd))}",
        ]
    return ["-kernel", str(files.kernel), "-append", linux_cmdline(machine), "-initrd", str(files.initrd)]


def _bootindex(hardware: Hardware) -> str:
    return "" if hardware.firmware == "direct" else ",bootindex=1"


def _seed_bootindex(hardware: Hardware) -> str:
    # OVMF connects only the disks of the boot order when one is given: GRUB must see
    # the seed disk (its command lines) too. It has no boot partition, so it never boots.
    return "" if hardware.firmware == "direct" else ",bootindex=9"


def disk_devices(hardware: Hardware, data_disks: int) -> list[str]:
    """The devices of the root disk (drive `root`) and data disks (`data0`...) on a bus other
    than virtio-blk: AHCI SATA (q35's own controller, a port each), NVMe (a controller each),
    or one virtio-scsi controller with a disk per drive."""
    drives = ["root"] + [f"data{i}" for i in range(data_disks)]
    argv: list[str] = []
    if hardware.disk == "scsi":
        argv += ["-device", "virtio-scsi-pci,id=scsi0"]
    for position, drive in enumerate(drives):
        boot = _bootindex(hardware) if drive == "root" else ""
        if hardware.disk == "sata":
            argv += ["-device", f"ide-hd,drive={drive},bus=ide.{position}" + boot]
        elif hardware.disk == "nvme":
            argv += ["-device", f"nvme,drive={drive},serial=xl{drive}" + boot]
        elif hardware.disk == "scsi":
            argv += ["-device", f"scsi-hd,drive={drive},bus=scsi0.0,channel=0,scsi-id={position},lun=0" + boot]
        else:  # pragma: no cover - the hardware model allows no other bus
            raise XenlabError(f"unknown disk bus {hardware.disk}")
    return argv


class Monitor:
    """A short-lived QMP connection to one machine (QEMU allows one client per socket)."""

    def __init__(self, machine: str, socket_path: Path, events_log: Path | None = None):
        self.machine = machine
        self.socket_path = socket_path
        self.events_log = events_log
        self._qmp: QEMUMonitorProtocol | None = None

    def __enter__(self) -> Self:
        qmp = QEMUMonitorProtocol(str(self.socket_path), nickname=self.machine)
        try:
            qmp.connect()
        except Exception as exc:  # noqa: BLE001 - any connect failure means "not reachable"
            raise XenlabError(f"{self.machine}: QMP not reachable at {self.socket_path}: {exc}") from None
        qmp.settimeout(120)
        self._qmp = qmp
        return self

    def __exit__(self, *exc_info) -> None:
        try:
            self._flush_events()
            if self._qmp is not None:
                self._qmp.close()
        except (EOFError, OSError):
            pass  # QEMU already gone (after `quit`): nothing left to close
        finally:
            self._qmp = None

    def _flush_events(self) -> None:
        if self._qmp is None or self.events_log is None:
            return
        import json

        events = self._qmp.get_events()
        if events:
            with open(self.events_log, "a") as log:
                log.writelines(json.dumps(event) + "\n" for event in events)
            self._qmp.clear_events()

    def command(self, name: str, /, **arguments):
        assert self._qmp is not None, "use Monitor as a context manager"
        try:
            return self._qmp.cmd(name, **arguments)
        except ExecuteError as exc:
            raise XenlabError(f"{self.machine}: QMP {name} failed: {exc.error.desc}") from None

    def hmp(self, command_line: str) -> str:
        """A human-monitor command; its output is returned (savevm/loadvm report errors there)."""
        return str(self.command("human-monitor-command", **{"command-line": command_line}))

    def status(self) -> str:
        return str(self.command("query-status")["status"])


class QemuProcess:
    """The one owner of a machine's QEMU process: launch, quit, reap.

    Modelled on `qemu.machine.QEMUMachine`: `launch` starts QEMU and returns once its QMP
    socket exists (or fails with the tail of its log); `quit` asks QEMU to quit over QMP
    and waits for the process to be gone; `reap` collects the exit status of a process
    this object started. A process started by another xenlab command (an attached lab)
    is known by its recorded pid only: it can be quit, and `down`/`sweep` stop it.
    """

    def __init__(self, name: str, files: MachineFiles, log: Path, marker: str, pid: int | None = None):
        self.name, self.files, self.log, self.marker = name, files, log, marker
        self.pid = pid
        self._popen: subprocess.Popen | None = None

    def alive(self) -> bool:
        return alive(self.pid, self.marker)

    def follow(self, pid: int | None) -> None:
        """The machine runs in a process another xenlab command started: collect ours if it
        has ended, and follow the recorded one."""
        if self._popen is not None and self._popen.poll() is not None:
            self._popen = None
        self.pid = pid

    def monitor(self) -> Monitor:
        return Monitor(self.name, self.files.qmp_socket, self.files.qmp_socket.with_name("qmp-events.jsonl"))

    def launch(self, argv: Sequence[str], tied: bool, timeout: float = 30) -> int:
        """Start QEMU; return its pid once its monitor socket is there."""
        if self.alive():
            raise XenlabError(f"{self.name}: QEMU is already running (pid {self.pid})")
        self.reap()
        self.files.qmp_socket.unlink(missing_ok=True)
        self.files.pidfile.unlink(missing_ok=True)
        proc = spawn(argv, self.log, tied=tied, record_in=Path(self.marker))
        self._popen, self.pid = proc, proc.pid

        def monitor_ready() -> bool:
            if proc.poll() is not None:
                tail = self.log.read_text(errors="replace")[-1500:]
                raise StopWaiting(f"QEMU exited with {proc.returncode}: {tail}")
            return self.files.qmp_socket.exists()

        wait_for(monitor_ready, f"{self.name}: QEMU monitor socket", timeout, 0.05)
        return proc.pid

    def quit(self, timeout: float = 30) -> None:
        """QEMU quits (like pulling the plug: the guest is not asked); its disks keep every checkpoint."""
        if self.alive():
            with self.monitor() as qmp, contextlib.suppress(Exception):  # QEMU may close before answering
                qmp.command("quit")
            wait_for(lambda: not self.alive(), f"{self.name}: QEMU to exit", timeout, 0.05)
        self.reap()

    def reap(self, timeout: float = 10) -> None:
        """Collect the exit status of the process this object started (no zombie is left)."""
        proc, self._popen = self._popen, None
        if proc is None:
            return
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=timeout)
