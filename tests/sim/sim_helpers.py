"""Helpers shared by the simulator tests (imported as a plain module)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import XenAPI

PW = "s3cret-test-pw"
GiB = 1024**3
MiB = 1024**2
HOST_MEM = 16 * GiB


def connect(sim, host=0) -> XenAPI.Session:
    s = XenAPI.Session(sim.url_for(host))
    s.xenapi.login_with_password("root", PW, "2.21", "xenlab-tests")
    return s


def host_ref(x, name: str) -> str:
    (ref,) = x.host.get_by_name_label(name)
    return ref


def vm_record(name: str, memory: int = 1 * GiB, vcpus: int = 1) -> dict:
    """A complete VM constructor record, as xapi requires every field."""
    m = str(memory)
    return {
        "name_label": name,
        "name_description": "",
        "user_version": "1",
        "is_a_template": False,
        "affinity": "OpaqueRef:NULL",
        "memory_static_max": m,
        "memory_dynamic_max": m,
        "memory_dynamic_min": m,
        "memory_static_min": str(min(memory, 256 * MiB)),
        "VCPUs_params": {},
        "VCPUs_max": str(vcpus),
        "VCPUs_at_startup": str(vcpus),
        "actions_after_shutdown": "destroy",
        "actions_after_reboot": "restart",
        "actions_after_crash": "restart",
        "PV_bootloader": "",
        "PV_kernel": "",
        "PV_ramdisk": "",
        "PV_args": "",
        "PV_bootloader_args": "",
        "PV_legacy_args": "",
        "HVM_boot_policy": "BIOS order",
        "HVM_boot_params": {"order": "cd"},
        "platform": {},
        "PCI_bus": "",
        "other_config": {},
        "recommendations": "",
    }


def make_vm(x, name: str, memory: int = 1 * GiB, sr: str | None = None) -> str:
    vm = x.VM.create(vm_record(name, memory))
    if sr:
        vdi = x.VDI.create(
            {
                "name_label": f"{name}-disk",
                "SR": sr,
                "virtual_size": str(4 * GiB),
                "type": "user",
                "sharable": False,
                "read_only": False,
                "other_config": {},
            }
        )
        x.VBD.create(
            {
                "VM": vm,
                "VDI": vdi,
                "userdevice": "0",
                "bootable": True,
                "mode": "RW",
                "type": "Disk",
                "empty": False,
                "other_config": {},
                "qos_algorithm_type": "",
                "qos_algorithm_params": {},
            }
        )
    return vm


def make_nfs_sr(x, name: str = "nfs-sr") -> str:
    master = x.pool.get_master(x.pool.get_all()[0])
    return x.SR.create(
        master,
        {"server": "nfs.lab.example", "serverpath": "/export/xen"},
        "0",
        name,
        "",
        "nfs",
        "user",
        True,
        {},
    )


def failure(fn, *args) -> list[str]:
    """Call and return the xapi ErrorDescription; fail if the call succeeded."""
    with pytest.raises(XenAPI.Failure) as ei:
        fn(*args)
    return ei.value.details
