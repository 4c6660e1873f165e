"""What the tools XCP-ng admins automate with (Ansible's xenserver modules, Xen Orchestra,
Terraform) rely on, each test naming the xapi behaviour the simulator follows: templates
and VM.provision, what VM.clone copies, VCPU and memory checks, VDI.resize, and the guest
agents' VM_guest_metrics."""

from __future__ import annotations

import pytest
from sim_helpers import GiB, MiB, connect, failure, host_ref, make_vm

from xenlab.sim.agents import DEFAULT_AGENT_S, TOOLS_KEY

NULL = "OpaqueRef:NULL"


def _net(x) -> str:
    return x.PIF.get_network(x.host.get_PIFs(host_ref(x, "h1"))[0])


def _vif(x, vm: str, device: str = "0") -> str:
    return x.VIF.create({"device": device, "network": _net(x), "VM": vm, "MAC": "", "MTU": "1500",
                         "other_config": {}, "qos_algorithm_type": "", "qos_algorithm_params": {}})


def _from_template(x, template: str, name: str) -> str:
    """What Ansible's xenserver_guest does: clone, drop the install disks, provision."""
    (tpl,) = x.VM.get_by_name_label(template)
    vm = x.VM.clone(tpl, name)
    x.VM.remove_from_other_config(vm, "disks")
    x.VM.provision(vm)
    _vif(x, vm)
    return vm


@pytest.fixture
def x(sim):
    return connect(sim).xenapi


# ------------------------------------------------------------------ templates, clone, provision
def test_provision_unmarks_the_template_first_as_xapi_vm_provision(x):
    (tpl,) = x.VM.get_by_name_label("Debian Bookworm 12")
    vm = x.VM.clone(tpl, "web")
    assert x.VM.get_is_a_template(vm)
    x.VM.remove_from_other_config(vm, "disks")
    x.VM.provision(vm)
    assert not x.VM.get_is_a_template(vm)
    assert "start" in x.VM.get_allowed_operations(vm)


def test_provision_removes_what_it_made_when_a_disk_fails_as_xapi_vm_provision(x):
    (tpl,) = x.VM.get_by_name_label("Debian Bookworm 12")
    vm = x.VM.clone(tpl, "half")
    sr_uuid = x.SR.get_uuid(x.pool.get_default_SR(x.pool.get_all()[0]))
    free = x.SR.get_physical_utilisation(x.pool.get_default_SR(x.pool.get_all()[0]))
    x.VM.remove_from_other_config(vm, "disks")
    x.VM.add_to_other_config(vm, "disks", f'<provision><disk device="0" size="{GiB}" sr="{sr_uuid}" bootable="true" '
                             'type="system"/><disk device="1" size="1" sr="no-such-sr" bootable="false" '
                             'type="user"/></provision>')
    assert failure(x.VM.provision, vm) == ["UUID_INVALID", "sr", "no-such-sr"]
    assert x.VM.get_VBDs(vm) == [] and not x.VM.get_is_a_template(vm)
    assert x.SR.get_physical_utilisation(x.pool.get_default_SR(x.pool.get_all()[0])) == free


def test_clone_rewrites_other_config_as_xapi_vm_clone_copy_vm_record(x):
    (tpl,) = x.VM.get_by_name_label("Debian Bookworm 12")
    vm = x.VM.clone(tpl, "c1")
    oc = x.VM.get_other_config(vm)
    assert "default_template" not in oc and oc["base_template_name"] == "Debian Bookworm 12"
    assert len(oc["mac_seed"]) == 36 and "disks" in oc  # the install keys stay for VM.provision
    assert not x.VM.get_is_default_template(vm) and x.VM.get_parent(vm) == NULL  # a new top-level VM
    x.VM.remove_from_other_config(vm, "disks")
    x.VM.provision(vm)
    x.VM.add_to_other_config(vm, "xensource_internal", "1")
    again = x.VM.clone(vm, "c2")
    oc2 = x.VM.get_other_config(again)
    assert oc2["base_template_name"] == "Debian Bookworm 12"  # kept, not the clone's own name
    assert oc2["mac_seed"] != oc["mac_seed"] and "xensource_internal" not in oc2
    snap = x.VM.snapshot(vm, "s1")
    assert x.VM.get_other_config(snap)["mac_seed"] == x.VM.get_other_config(vm)["mac_seed"]  # snapshots keep it


def test_cloned_disks_are_owned_by_the_clone_as_xapi_ca_58405(x, sim):
    vm = make_vm(x, "owner", sr=x.pool.get_default_SR(x.pool.get_all()[0]))
    clone = x.VM.clone(vm, "owner-clone")
    (vbd,) = x.VM.get_VBDs(clone)
    assert x.VBD.get_other_config(vbd) == {"owner": ""}


def test_default_templates_allow_only_xapi_check_template_operations(x):
    (tpl,) = x.VM.get_by_name_label("Debian Bookworm 12")
    allowed = set(x.VM.get_allowed_operations(tpl))
    assert {"clone", "copy", "provision", "changing_VCPUs", "changing_memory_limits"} <= allowed
    assert not allowed & {"destroy", "start", "make_into_template"}
    assert failure(x.VM.destroy, tpl) == ["VM_IS_TEMPLATE", tpl, "destroy"]
    assert failure(x.VM.start, tpl, False, False) == ["VM_IS_TEMPLATE", tpl, "start"]
    x.VM.set_VCPUs_max(tpl, "4")  # a template's sizes may change
    x.VM.set_memory_limits(tpl, str(512 * MiB), str(2 * GiB), str(2 * GiB), str(2 * GiB))
    assert (x.VM.get_VCPUs_max(tpl), x.VM.get_memory_static_max(tpl)) == ("4", str(2 * GiB))
    clone = x.VM.clone(tpl, "mine")  # a template that is not a default one may be destroyed
    assert "destroy" in x.VM.get_allowed_operations(clone)
    x.VM.destroy(clone)


def test_snapshots_allow_only_xapi_check_snapshot_operations(x):
    vm = make_vm(x, "snappy")
    snap = x.VM.snapshot(vm, "snap")
    assert failure(x.VM.provision, snap) == ["VM_IS_SNAPSHOT", snap, "provision"]
    assert "destroy" in x.VM.get_allowed_operations(snap)


def test_vcpu_counts_keep_xapi_vm_set_vcpus_ordering(x):
    vm = make_vm(x, "cpus")
    assert failure(x.VM.set_VCPUs_at_startup, vm, "2") == [
        "INVALID_VALUE", "VCPU values must satisfy: 0 < VCPUs_at_startup ≤ VCPUs_max", "2"]
    x.VM.set_VCPUs_max(vm, "4")  # Ansible raises max first when growing ...
    x.VM.set_VCPUs_at_startup(vm, "4")
    assert failure(x.VM.set_VCPUs_max, vm, "2")[0] == "INVALID_VALUE"  # ... and lowers at_startup first
    x.VM.set_VCPUs_at_startup(vm, "2")
    x.VM.set_VCPUs_max(vm, "2")
    x.VM.start(vm, False, False)
    assert failure(x.VM.set_VCPUs_max, vm, "3") == ["VM_BAD_POWER_STATE", vm, "halted", "running"]


def test_set_is_a_template_true_drops_the_metrics_as_xapi_vm_helpers(x):
    vm = make_vm(x, "to-template")
    x.VM.set_is_a_template(vm, True)
    assert x.VM.get_metrics(vm) == NULL and x.VM.get_is_a_template(vm)
    x.VM.set_is_a_template(vm, False)


def test_vdi_resize_grows_offline_and_refuses_what_xapi_and_sm_refuse(x):
    vm = make_vm(x, "disky", sr=x.pool.get_default_SR(x.pool.get_all()[0]))
    (vbd,) = x.VM.get_VBDs(vm)
    vdi = x.VBD.get_VDI(vbd)
    x.VDI.resize(vdi, str(6 * GiB))
    assert x.VDI.get_virtual_size(vdi) == str(6 * GiB)
    assert failure(x.VDI.resize, vdi, str(GiB))[:2] == ["SR_BACKEND_FAILURE_79", ""]  # SM will not shrink
    x.VM.start(vm, False, False)
    assert x.VBD.get_currently_attached(vbd)  # a running domain has its disks plugged
    assert failure(x.VDI.resize, vdi, str(8 * GiB)) == ["VDI_IN_USE", vdi, "resize"]
    x.VM.hard_shutdown(vm)
    assert not x.VBD.get_currently_attached(vbd)  # xapi's force_state_reset: all detached at halt


# ------------------------------------------------------------------ guest agents
def test_guest_metrics_appear_empty_then_filled_by_the_agent_as_xapi_xenops(x, sim):
    vm = _from_template(x, "Debian Bookworm 12", "agent")
    assert x.VM.get_guest_metrics(vm) == NULL
    x.VM.start(vm, False, False)
    gm = x.VM.get_guest_metrics(vm)  # created at once for the running domain, still empty
    rec = x.VM_guest_metrics.get_record(gm)
    assert rec["networks"] == {} and rec["os_version"] == {} and rec["live"]
    sim.control.advance(DEFAULT_AGENT_S)
    rec = x.VM_guest_metrics.get_record(gm)
    mac = x.VIF.get_MAC(x.VM.get_VIFs(vm)[0])
    assert rec["networks"]["0/ip"] == rec["networks"]["0/ipv4/0"] == "10.0.0.101"  # h1's subnet, from .101
    assert rec["networks"]["0/ipv6/0"].startswith("fe80::") and mac[-5:].replace(":", "") in rec["networks"]["0/ipv6/0"]
    assert rec["os_version"]["distro"] == "debian" and rec["os_version"]["major"] == "12"
    assert rec["PV_drivers_version"]["major"] and rec["PV_drivers_detected"] and rec["live"]
    assert rec["other"]["feature-poweroff"] == "1"


def test_addresses_are_leased_per_mac_from_the_plan(x, sim):
    a = _from_template(x, "Debian Bookworm 12", "a")
    b = _from_template(x, "Debian Bookworm 12", "b")
    for vm in (a, b):
        x.VM.start(vm, False, False)
    sim.control.advance(DEFAULT_AGENT_S)
    ip = {vm: x.VM_guest_metrics.get_networks(x.VM.get_guest_metrics(vm))["0/ip"] for vm in (a, b)}
    assert sorted(ip.values()) == ["10.0.0.101", "10.0.0.102"]
    x.VM.clean_reboot(a)
    sim.control.advance(DEFAULT_AGENT_S)
    assert x.VM_guest_metrics.get_networks(x.VM.get_guest_metrics(a))["0/ip"] == ip[a]  # the same lease


def test_a_halted_vm_keeps_its_metrics_until_the_next_start_as_xapi_vm_start(x, sim):
    vm = _from_template(x, "Debian Bookworm 12", "cycle")
    x.VM.start(vm, False, False)
    sim.control.advance(DEFAULT_AGENT_S)
    gm = x.VM.get_guest_metrics(vm)
    x.VM.clean_shutdown(vm)
    assert x.VM.get_guest_metrics(vm) == gm and x.VM_guest_metrics.get_networks(gm)  # stale, as xapi leaves it
    x.VM.start(vm, False, False)
    fresh = x.VM.get_guest_metrics(vm)
    assert fresh != gm and x.VM_guest_metrics.get_networks(fresh) == {}
    assert failure(x.VM_guest_metrics.get_record, gm)[0] == "HANDLE_INVALID"
    sim.control.advance(DEFAULT_AGENT_S)
    assert "0/ip" in x.VM_guest_metrics.get_networks(fresh)


def test_a_reboot_is_a_new_domain_whose_agent_reports_again_as_xapi_xenops(x, sim):
    vm = _from_template(x, "Debian Bookworm 12", "reboot")
    x.VM.start(vm, False, False)
    sim.control.advance(DEFAULT_AGENT_S)
    before = x.VM.get_guest_metrics(vm)
    x.VM.hard_reboot(vm)  # the metrics are older than the new domain: xapi deletes them
    after = x.VM.get_guest_metrics(vm)
    assert after != before and x.VM_guest_metrics.get_networks(after) == {}
    sim.control.advance(DEFAULT_AGENT_S)
    assert "0/ip" in x.VM_guest_metrics.get_networks(after)


def test_a_migrated_guests_agent_reports_from_its_new_host(pool):
    sim, x = pool
    vm = _from_template(x, "Debian Bookworm 12", "mover")
    x.VM.start_on(vm, host_ref(x, "h1"), False, False)
    sim.control.advance(DEFAULT_AGENT_S)
    gm = x.VM.get_guest_metrics(vm)
    reported = x.VM_guest_metrics.get_last_updated(gm)
    sim.control.advance(60)
    x.VM.pool_migrate(vm, host_ref(x, "h2"), {})
    sim.control.advance(DEFAULT_AGENT_S)
    assert x.VM.get_guest_metrics(vm) == gm  # same record (xapi keeps it across a migration) ...
    assert x.VM_guest_metrics.get_last_updated(gm) > reported  # ... refreshed by the agent on h2
    assert x.VM_guest_metrics.get_networks(gm)["0/ip"].startswith("10.0.0.")


def test_a_guest_without_tools_never_reports(x, sim):
    """As xapi for a domain with no agent: the empty record, no address, no OS, no PV drivers."""
    (tpl,) = x.VM.get_by_name_label("Debian Bookworm 12")
    bare = x.VM.clone(tpl, "Debian without tools")  # per template ...
    x.VM.add_to_other_config(bare, TOOLS_KEY, "false")
    vm = _from_template(x, "Debian without tools", "bare")
    media = _from_template(x, "Other install media", "installer")  # ... the install-media template has none
    other = _from_template(x, "Debian Bookworm 12", "per-vm")  # ... or per VM
    x.VM.add_to_other_config(other, TOOLS_KEY, "false")
    for v in (vm, media, other):
        x.VM.start(v, False, False)
    sim.control.advance(10 * DEFAULT_AGENT_S)
    for v in (vm, media, other):
        rec = x.VM_guest_metrics.get_record(x.VM.get_guest_metrics(v))
        assert (rec["networks"], rec["os_version"], rec["PV_drivers_detected"]) == ({}, {}, False)


def test_vm_destroy_takes_its_guest_metrics_as_xapi_vm_helpers_destroy(x, sim):
    vm = _from_template(x, "Debian Bookworm 12", "doomed")
    x.VM.start(vm, False, False)
    gm = x.VM.get_guest_metrics(vm)
    x.VM.hard_shutdown(vm)
    x.VM.destroy(vm)
    assert failure(x.VM_guest_metrics.get_record, gm)[0] == "HANDLE_INVALID"


def test_devices_hotplug_into_an_hvm_guest_once_its_drivers_are_up_as_xapi_vif_and_vbd_helpers(x, sim):
    vm = make_vm(x, "hvm-guest")  # HVM, tools in it
    x.VM.start(vm, False, False)
    vif = _vif(x, vm)
    assert failure(x.VIF.plug, vif) == ["VM_MISSING_PV_DRIVERS", vm]  # the agent has not reported yet
    sim.control.advance(DEFAULT_AGENT_S)
    x.VIF.plug(vif)
    assert x.VIF.get_currently_attached(vif)
    assert failure(x.VIF.plug, vif) == ["DEVICE_ALREADY_ATTACHED", vif]
    vdi = x.VDI.create({"name_label": "hot", "SR": x.pool.get_default_SR(x.pool.get_all()[0]),
                        "virtual_size": str(GiB), "type": "user", "sharable": False, "read_only": False,
                        "other_config": {}})
    vbd = x.VBD.create({"VM": vm, "VDI": vdi, "userdevice": "1", "bootable": False, "mode": "RW", "type": "Disk",
                        "empty": False, "other_config": {}, "qos_algorithm_type": "", "qos_algorithm_params": {}})
    x.VBD.plug(vbd)
    x.VM.hard_shutdown(vm)
    assert failure(x.VIF.plug, vif) == ["VM_BAD_POWER_STATE", vm, "running", "halted"]
    assert failure(x.VBD.plug, vbd) == ["VM_BAD_POWER_STATE", vm, "running", "halted"]


def test_async_clean_reboot_and_shutdown_run_as_tasks_ansible_polls(x, sim):
    """xapi's Async.VM.clean_reboot/clean_shutdown: a task, pending for the operation's duration,
    then success (task.get_status, what Ansible's wait_for_task polls), then task.destroy."""
    vm = _from_template(x, "Debian Bookworm 12", "async")
    x.VM.start(vm, False, False)
    sim.control.advance(DEFAULT_AGENT_S)
    for call, state in ((x.Async.VM.clean_reboot, "Running"), (x.Async.VM.clean_shutdown, "Halted")):
        task = call(vm)
        assert x.task.get_status(task) == "pending"
        sim.control.advance(5)
        assert x.task.get_status(task) == "success" and x.VM.get_power_state(vm) == state
        x.task.destroy(task)
        assert failure(x.task.get_status, task)[0] == "HANDLE_INVALID"
    assert x.VM_guest_metrics.get_networks(x.VM.get_guest_metrics(vm)) != {}  # the reboot's agent had reported
