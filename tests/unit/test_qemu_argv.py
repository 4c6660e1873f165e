"""QEMU command lines: right boot chain, accel, and networking that never leaves the machine."""

from pathlib import Path

import pytest

from xenlab.lab.accel import AccelChoice
from xenlab.lab.qemu import MachineFiles, dom0_cmdline, qemu_argv, xen_cmdline
from xenlab.plan import plan_lab
from xenlab.spec import parse_lab

RUN = Path("/tmp/xenlab-0/alpha")
TCG = AccelChoice("tcg", "qemu64", "test")


def files(name: str, xen: bool = True, image: str = "/cache/img,v1") -> MachineFiles:
    d = RUN / "machines" / name
    return MachineFiles(d / "root.qcow2", d / "seed.img", d / "serial.log", d / "qmp.sock", d / "qemu.pid",
                        Path(image) / "vmlinuz", Path(image) / "initrd.img",
                        Path(image) / "xen.elf" if xen else None)


@pytest.fixture()
def plan():
    return plan_lab(parse_lab("name: alpha\nnetworks:\n  lab:\n  storage:\nhosts:\n  h1: {nics: [lab, storage], vcpus: 2}\n"))


def argv_for(plan, name="h1", xen=True, **kw):
    sockets = {n.name: RUN / "net" / f"{n.name}.vde" for n in plan.networks}
    return qemu_argv(plan.machine(name), files(name, xen), kw.pop("accel", TCG), 40022, sockets, **kw)


def option_values(argv: list[str], option: str) -> list[str]:
    return [argv[i + 1] for i, a in enumerate(argv) if a == option]


def test_xen_host_boots_xen_with_dom0_as_multiboot_modules(plan):
    argv = argv_for(plan)
    assert option_values(argv, "-kernel") == ["/cache/img,v1/xen.elf"]
    [modules] = option_values(argv, "-initrd")
    kernel_part, initrd_part = modules.split(" ", 1)[0], modules.rsplit(",", 1)[1]
    # commas inside paths are doubled so QEMU does not split modules there
    assert kernel_part == "/cache/img,,v1/vmlinuz"
    assert initrd_part.endswith("initrd.img")
    assert "console=hvc0" in modules and "systemd.machine_id=" in modules
    assert option_values(argv, "-append") == [xen_cmdline(plan.machine("h1"))]


def test_services_node_boots_linux_directly(plan):
    argv = argv_for(plan, "services", xen=False)
    assert option_values(argv, "-kernel") == ["/cache/img,v1/vmlinuz"]
    assert option_values(argv, "-initrd") == ["/cache/img,v1/initrd.img"]
    assert "console=ttyS0" in option_values(argv, "-append")[0]


def test_tcg_uses_a_cpu_model_dom0_survives(plan):
    argv = argv_for(plan)
    assert option_values(argv, "-cpu") == ["qemu64"]
    assert option_values(argv, "-accel")[0].startswith("tcg")
    kvm = argv_for(plan, accel=AccelChoice("kvm", "host", "test"))
    assert option_values(kvm, "-accel") == ["kvm"] and option_values(kvm, "-cpu") == ["host"]


def test_resources_follow_the_spec(plan):
    argv = argv_for(plan)
    assert option_values(argv, "-smp") == ["2"] and option_values(argv, "-m") == ["2048"]
    assert "dom0_max_vcpus=2" in xen_cmdline(plan.machine("h1"))
    assert "dom0_mem=1024M,max:1024M" in xen_cmdline(plan.machine("h1"))


def test_networking_stays_on_this_machine(plan):
    argv = argv_for(plan)
    netdevs = option_values(argv, "-netdev")
    assert netdevs[0] == "user,id=mgmt,restrict=on,hostfwd=tcp:127.0.0.1:40022-:22"
    assert netdevs[1:] == [f"vde,id=net-lab,sock={RUN}/net/lab.vde", f"vde,id=net-storage,sock={RUN}/net/storage.vde"]
    for netdev in netdevs:
        assert not netdev.startswith(("socket", "stream", "dgram", "tap", "bridge"))
        assert "mcast" not in netdev
    joined = " ".join(argv)
    assert "0.0.0.0" not in joined


def test_nics_in_plan_order_with_planned_macs(plan):
    devices = [d for d in option_values(argv_for(plan), "-device") if d.startswith("virtio-net")]
    h1 = plan.machine("h1")
    assert devices[0].endswith(f"id=nic-mgmt,mac={h1.mgmt_mac}")
    assert [d.split("mac=")[1] for d in devices[1:]] == [n.mac for n in h1.nics]
    assert [d.split("id=")[1].split(",")[0] for d in devices[1:]] == ["nic-lab", "nic-storage"]


def test_control_and_logs_live_in_the_run_directory(plan):
    argv = argv_for(plan)
    assert option_values(argv, "-qmp") == [f"unix:{RUN}/machines/h1/qmp.sock,server=on,wait=off"]
    assert f"path={RUN}/machines/h1/serial.log" in option_values(argv, "-chardev")[0]
    assert option_values(argv, "-pidfile") == [f"{RUN}/machines/h1/qemu.pid"]


def test_seed_disk_is_read_only_so_snapshots_skip_it(plan):
    drives = option_values(argv_for(plan), "-drive")
    assert any("id=seed" in d and "readonly=on" in d for d in drives)
    assert any("id=root" in d and "format=qcow2" in d for d in drives)


def test_start_paused_only_when_asked(plan):
    assert "-S" not in argv_for(plan)
    assert argv_for(plan, start_paused=True)[-1] == "-S"


def test_identity_on_the_kernel_command_line(plan):
    h1 = plan.machine("h1")
    line = dom0_cmdline(h1)
    assert f"systemd.machine_id={h1.machine_id}" in line and "systemd.hostname=h1" in line
    assert "net.ifnames=0" in line
