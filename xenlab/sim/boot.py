"""Booting hosts: each fresh host is the master of its own pool, with dom0, templates, storage, network.

A mixin of ``Deployment`` (``deployment.py``): its methods use the deployment's state."""

from __future__ import annotations

from .agents import TOOLS_KEY
from .hosts import (
    API_VERSION,
    DEFAULT_CPU_FEATURES,
    PRODUCT_VERSION,
    PROVISION_XML,
    TEMPLATES,
    GiB,
    MiB,
    SimHost,
)
from .model import Database


class Boot:
    """Booting hosts (part of ``Deployment``)."""

    # ------------------------------------------------------------------ boot
    def boot_standalone(self, h: SimHost) -> None:
        """Fresh install: own pool, local SR, management network, dom0, templates."""
        db = self.new_db()
        h.db = db
        now = self.now()
        metrics = db.create(
            "host_metrics", memory_total=h.memory_total, memory_free=h.memory_total, live=True, last_updated=now
        )
        host_fields = {
            "uuid": h.uuid,
            "name_label": h.name,
            "hostname": h.name,
            "address": h.address,
            "enabled": True,
            "API_version_major": API_VERSION[0],
            "API_version_minor": API_VERSION[1],
            "API_version_vendor": "XenSource",
            "software_version": {
                "product_brand": "XCP-ng",
                "product_version": PRODUCT_VERSION,
                "platform_name": "XCP",
                "platform_version": "3.4.0",
                "xapi": "24.19",
                "hostname": h.name,
                "xenlab_simulator": "true",
            },
            "capabilities": ["xen-3.0-x86_64", "hvm-3.0-x86_64"],
            "cpu_info": {
                "cpu_count": str(h.cpus),
                "socket_count": "1",
                "vendor": "GenuineIntel",
                "features": DEFAULT_CPU_FEATURES,
            },
            "sched_policy": "credit",
            "supported_bootloaders": ["pygrub", "eliloader"],
            "metrics": metrics,
            "memory_overhead": 0,
            "allowed_operations": [
                op
                for op in self.dm.enums.get("host_allowed_operations", ())
                if op in ("provision", "evacuate", "shutdown", "reboot", "vm_start", "vm_resume", "vm_migrate")
            ],
        }
        spec = self.dm.cls("host")
        db.create("host", ref=h.ref, **{k: v for k, v in host_fields.items() if k in spec.fields})
        for n in range(h.cpus):
            db.create("host_cpu", host=h.ref, number=n, vendor="GenuineIntel", speed=2400, modelname="Simulated CPU")
        net = db.create(
            "network", name_label="Pool-wide network associated with eth0", bridge="xenbr0", MTU=1500, other_config={}
        )
        db.create(
            "PIF",
            device="eth0",
            network=net,
            host=h.ref,
            MAC=self._mac(h.index, 0),
            MTU=1500,
            VLAN=-1,
            physical=True,
            currently_attached=True,
            ip_configuration_mode="Static",
            IP=h.address,
            netmask="255.255.255.0",
            management=True,
        )
        sr = db.create(
            "SR",
            name_label="Local storage",
            type="ext",
            content_type="user",
            shared=False,
            physical_size=1024 * GiB,
            other_config={"i18n-key": "local-storage"},
            sm_config={"devserial": "scsi-sim"},
        )
        db.create("PBD", host=h.ref, SR=sr, device_config={"device": "/dev/sda3"}, currently_attached=True)
        dom0 = self._new_vm(
            db,
            name_label=f"Control domain on host: {h.name}",
            is_control_domain=True,
            memory=self.dom0_memory,
            vcpus=min(8, h.cpus),
        )
        db.set(dom0, power_state="Running", resident_on=h.ref, domid=0)
        self.vm_metrics_running(db, dom0)
        if "control_domain" in spec.fields:
            db.set(h.ref, control_domain=dom0)
        pool_fields = {
            "master": h.ref,
            "default_SR": sr,
            "suspend_image_SR": sr,
            "crash_dump_SR": sr,
            "other_config": {},
        }
        db.create("pool", **pool_fields)
        for name, mem, vcpus, disk, hvm in TEMPLATES:
            other = {"default_template": "true"}
            if not disk:
                other[TOOLS_KEY] = "false"  # installed from media: no guest tools until someone adds them
            if disk:
                other["disks"] = PROVISION_XML.format(size=disk)
            t = self._new_vm(db, name_label=name, memory=mem, vcpus=vcpus, template=True, other_config=other, hvm=hvm)
            db.set(t, is_default_template=True)
        self.refresh_memory(db, h.ref)

    @staticmethod
    def _mac(i: int, n: int) -> str:
        return f"02:00:{(i >> 8) & 0xFF:02x}:{i & 0xFF:02x}:{n & 0xFF:02x}:{0:02x}"

    def _new_vm(
        self,
        db: Database,
        name_label: str,
        memory: int,
        vcpus: int,
        is_control_domain: bool = False,
        template: bool = False,
        other_config: dict | None = None,
        hvm: bool = True,
    ) -> str:
        metrics = db.create(
            "VM_metrics", memory_actual=0, VCPUs_number=0, install_time=self.now(), last_updated=self.now()
        )
        fields = {
            "name_label": name_label,
            "is_control_domain": is_control_domain,
            "is_a_template": template,
            "power_state": "Halted",
            "memory_static_max": memory,
            "memory_dynamic_max": memory,
            "memory_dynamic_min": memory,
            "memory_static_min": min(memory, 512 * MiB),
            "memory_target": memory,
            "VCPUs_max": vcpus,
            "VCPUs_at_startup": vcpus,
            "actions_after_shutdown": "destroy",
            "actions_after_reboot": "restart",
            "actions_after_crash": "restart",
            "HVM_boot_policy": "BIOS order" if hvm else "",
            "HVM_boot_params": {"order": "cd"} if hvm else {},
            "PV_bootloader": "" if hvm else "pygrub",
            "platform": {"viridian": "false", "acpi": "1", "apic": "true", "pae": "true"},
            "other_config": other_config or {},
            "metrics": metrics,
            "domid": -1,
            "domain_type": "hvm" if hvm else "pv",
            "user_version": 1,
        }
        spec = self.dm.cls("VM")
        vm = db.create("VM", **{k: v for k, v in fields.items() if k in spec.fields})
        self.update_overhead(db, vm)
        return vm
