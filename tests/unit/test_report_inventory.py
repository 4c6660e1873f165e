"""Host inventory: parsers on representative outputs, and real commands run on this machine."""

from __future__ import annotations

import os
import subprocess

from xenlab.lab.ssh import CommandResult
from xenlab.report.inventory import (
    collect_inventory,
    parse_cpuinfo,
    parse_detect_virt,
    parse_dmi,
    parse_ip_links,
    parse_lsblk,
    parse_xl_info,
    xen_version_of,
)

XL_INFO = """host                   : h1
release                : 6.1.0-27-amd64
nr_cpus                : 2
total_memory           : 2047
free_memory            : 1010
xen_major              : 4
xen_minor              : 17
xen_extra              : .5-pre
virt_caps              : pv hvm shadow
"""


class LocalHost:
    """Runs the inventory's commands on this machine with the shell, as SSH would on a host."""

    name = "local"

    def run(self, command: str, timeout: float = 60) -> CommandResult:
        done = subprocess.run(["sh", "-c", command], capture_output=True, text=True, timeout=timeout, check=False)
        return CommandResult(self.name, command, done.returncode, done.stdout, done.stderr, 0.0)


class DeadHost:
    name = "dead"

    def run(self, command: str, timeout: float = 60):
        raise OSError("connection refused")


def test_xl_info_gives_version_memory_and_cpus():
    info = parse_xl_info(XL_INFO)
    assert xen_version_of(info) == "4.17.5-pre"
    assert (info["total_memory"], info["nr_cpus"]) == ("2047", "2")


def test_cpuinfo_takes_the_first_cpu_and_counts_them():
    text = ("processor : 0\nmodel name : QEMU Virtual CPU\nflags : fpu lm sse2\n\n"
            "processor : 1\nmodel name : X\nflags : y\n")
    assert parse_cpuinfo(text) == ("QEMU Virtual CPU", ["fpu", "lm", "sse2"], 2)


def test_links_leave_out_loopback_and_guest_interfaces():
    text = ('[{"ifname":"lo","address":"00:00:00:00:00:00","operstate":"UNKNOWN","mtu":65536},'
            '{"ifname":"eth0","address":"02:58:0a:b0:00:01","operstate":"UP","mtu":1500,"master":"xenbr0"},'
            '{"ifname":"vif3.0","address":"fe:ff:ff:ff:ff:ff","operstate":"UP","mtu":1500}]')
    assert parse_ip_links(text) == ["eth0 02:58:0a:b0:00:01 UP mtu 1500 in xenbr0"]
    assert parse_ip_links("not json") == []


def test_disks_only_whole_disks_with_size_and_model():
    text = ('{"blockdevices":[{"name":"vda","size":8589934592,"type":"disk","model":"QEMU HARDDISK","rota":true},'
            '{"name":"vda1","size":"1024","type":"part","model":null,"rota":"1"},'
            '{"name":"sr0","size":1073741824,"type":"rom","model":null,"rota":"1"}]}')
    assert parse_lsblk(text) == ["vda 8.0 GiB QEMU HARDDISK (rotational)"]


def test_firmware_and_virtualization():
    dmi = ("/sys/class/dmi/id/sys_vendor:QEMU\n/sys/class/dmi/id/product_name:Standard PC (Q35 + ICH9, 2009)\n"
           "/sys/class/dmi/id/bios_vendor:SeaBIOS\n/sys/class/dmi/id/bios_version:1.16.2\n"
           "/sys/class/dmi/id/bios_date:04/01/2014\n")
    assert parse_dmi(dmi) == "QEMU Standard PC (Q35 + ICH9, 2009); BIOS SeaBIOS 1.16.2 (04/01/2014)"
    assert parse_detect_virt("none\n") is False and parse_detect_virt("qemu\n") is True
    assert parse_detect_virt("") is None


def test_collect_inventory_runs_real_commands():
    inv = collect_inventory(LocalHost(), "kvm")
    with open("/proc/cpuinfo") as f:
        model, flags, _ = parse_cpuinfo(f.read())
    assert (inv.name, inv.accel) == ("local", "kvm")
    assert inv.cpu_model == model and inv.cpu_flags == flags and flags
    assert inv.dom0_kernel == os.uname().release
    # this machine has no Xen: what xl would tell stays empty instead of being invented
    assert inv.xen_version == "" and inv.memory_mib is None


def test_an_unreachable_host_gives_an_empty_inventory():
    inv = collect_inventory(DeadHost(), "tcg")
    assert inv.name == "dead" and inv.accel == "tcg"
    assert (inv.cpu_flags, inv.nics, inv.disks, inv.xen_version, inv.nested) == ([], [], [], "", None)
