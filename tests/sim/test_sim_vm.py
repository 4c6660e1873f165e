"""VM lifecycle, placement, memory checks, migration and evacuation."""

from __future__ import annotations

from sim_helpers import HOST_MEM, GiB, connect, failure, host_ref, make_nfs_sr, make_vm, vm_record


def test_vm_create_requires_every_constructor_field(sim):
    x = connect(sim).xenapi
    rec = vm_record("incomplete")
    del rec["VCPUs_max"]
    assert failure(x.VM.create, rec) == ["INTERNAL_ERROR", 'Server_helpers.Dispatcher_FieldNotFound("VCPUs_max")']


def test_vm_from_template_clone_provision_start(sim):
    """xapi_vm.provision: the clone stops being a template first, then the disks of
    other_config:disks are made in the SR each names by UUID (xe vm-install rewrites sr="")."""
    x = connect(sim).xenapi
    (tpl,) = x.VM.get_by_name_label("Debian Bookworm 12")
    assert x.VM.get_is_a_template(tpl)
    vm = x.VM.clone(tpl, "deb1")
    assert x.VM.get_is_a_template(vm)  # clone of a template is a template, as in xapi
    assert failure(x.VM.start, vm, False, False) == ["VM_IS_TEMPLATE", vm, "start"]
    assert failure(x.VM.provision, vm) == ["UUID_INVALID", "sr", ""]  # the template's own sr=""
    assert not x.VM.get_is_a_template(vm) and x.VM.get_VBDs(vm) == []
    default_sr = x.pool.get_default_SR(x.pool.get_all()[0])
    disks = x.VM.get_other_config(vm)["disks"].replace('sr=""', f'sr="{x.SR.get_uuid(default_sr)}"')
    x.VM.remove_from_other_config(vm, "disks")
    x.VM.add_to_other_config(vm, "disks", disks)
    x.VM.provision(vm)
    assert "disks" not in x.VM.get_other_config(vm)
    (vbd,) = x.VM.get_VBDs(vm)
    vdi = x.VBD.get_VDI(vbd)
    assert x.VDI.get_virtual_size(vdi) == str(10 * GiB)
    assert x.VDI.get_SR(vdi) == default_sr
    assert (x.VDI.get_name_label(vdi), x.VBD.get_other_config(vbd)) == ("0", {"owner": ""})
    x.VM.start(vm, False, False)
    rec = x.VM.get_record(vm)
    assert rec["power_state"] == "Running" and rec["resident_on"] == host_ref(x, "h1")
    assert vm in x.host.get_resident_VMs(rec["resident_on"])
    assert x.VM_metrics.get_memory_actual(rec["metrics"]) == rec["memory_static_max"]
    assert int(rec["domid"]) > 0


def test_power_cycle_and_bad_power_state_parameters(sim):
    x = connect(sim).xenapi
    vm = make_vm(x, "cycle")
    assert failure(x.VM.clean_shutdown, vm) == ["VM_BAD_POWER_STATE", vm, "running", "halted"]
    assert failure(x.VM.hard_shutdown, vm) == ["VM_BAD_POWER_STATE", vm, "paused, suspended, running", "halted"]
    assert failure(x.VM.unpause, vm) == ["VM_BAD_POWER_STATE", vm, "paused", "halted"]
    x.VM.start(vm, False, False)
    assert failure(x.VM.start, vm, False, False) == ["VM_BAD_POWER_STATE", vm, "halted", "running"]
    x.VM.pause(vm)
    assert x.VM.get_power_state(vm) == "Paused"
    assert failure(x.VM.clean_reboot, vm) == ["VM_BAD_POWER_STATE", vm, "running", "paused"]
    x.VM.unpause(vm)
    dom = x.VM.get_domid(vm)
    x.VM.clean_reboot(vm)
    assert x.VM.get_domid(vm) != dom and x.VM.get_power_state(vm) == "Running"
    x.VM.clean_shutdown(vm)
    rec = x.VM.get_record(vm)
    assert rec["power_state"] == "Halted" and rec["resident_on"] == "OpaqueRef:NULL" and rec["domid"] == "-1"
    x.VM.destroy(vm)
    assert failure(x.VM.get_record, vm)[0] == "HANDLE_INVALID"


def test_start_on_and_memory_check(pool):
    _sim, x = pool
    h2 = host_ref(x, "h2")
    vm = make_vm(x, "on-h2")
    x.VM.start_on(vm, h2, False, False)
    assert x.VM.get_resident_on(vm) == h2
    big = make_vm(x, "too-big", HOST_MEM)  # more than any host has left
    free = x.host.compute_free_memory(h2)
    need = int(x.VM.get_memory_static_max(big)) + int(x.VM.get_memory_overhead(big))
    assert failure(x.VM.start_on, big, h2, False, False) == ["HOST_NOT_ENOUGH_FREE_MEMORY", str(need), free]
    assert failure(x.VM.start, big, False, False) == ["NO_HOSTS_AVAILABLE"]
    x.host.disable(h2)
    small = make_vm(x, "small")
    assert failure(x.VM.start_on, small, h2, False, False) == ["HOST_DISABLED", h2]


def test_host_memory_free_tracks_vms(pool):
    _sim, x = pool
    h3 = host_ref(x, "h3")
    before = int(x.host.compute_free_memory(h3))
    vm = make_vm(x, "mem", 3 * GiB)
    overhead = int(x.VM.get_memory_overhead(vm))
    assert 0 < overhead < 100 * 1024 * 1024  # shadow/p2m pages: MiBs for a 3 GiB VM
    x.VM.start_on(vm, h3, False, False)
    assert int(x.host.compute_free_memory(h3)) == before - 3 * GiB - overhead
    x.VM.hard_shutdown(vm)
    assert int(x.host.compute_free_memory(h3)) == before
    # the removed host_metrics.memory_free is neither readable nor in records
    assert failure(x.host_metrics.get_memory_free, x.host.get_metrics(h3)) == ["MESSAGE_REMOVED"]
    assert "memory_free" not in x.host_metrics.get_record(x.host.get_metrics(h3))


def test_vm_on_local_storage_cannot_start_elsewhere(pool):
    _sim, x = pool
    h1, h2 = host_ref(x, "h1"), host_ref(x, "h2")
    (pbd,) = [p for p in x.host.get_PBDs(h1) if not x.SR.get_shared(x.PBD.get_SR(p))]
    local = x.PBD.get_SR(pbd)
    vm = make_vm(x, "pinned", sr=local)
    assert failure(x.VM.start_on, vm, h2, False, False) == ["VM_REQUIRES_SR", vm, local]
    assert x.VM.get_possible_hosts(vm) == [h1]


def test_pool_migrate(pool):
    _sim, x = pool
    h1, h2 = host_ref(x, "h1"), host_ref(x, "h2")
    sr = make_nfs_sr(x)
    vm = make_vm(x, "mover", 2 * GiB, sr=sr)
    x.VM.start_on(vm, h1, False, False)
    x.VM.pool_migrate(vm, h2, {"live": "true"})
    assert x.VM.get_resident_on(vm) == h2
    assert vm in x.host.get_resident_VMs(h2) and vm not in x.host.get_resident_VMs(h1)
    assert x.VM.get_power_state(vm) == "Running"
    # memory check on the destination
    hog = make_vm(x, "hog", 10 * GiB, sr=sr)
    x.VM.start_on(hog, h1, False, False)
    free = x.host.compute_free_memory(h2)
    need = str(10 * GiB + int(x.VM.get_memory_overhead(hog)))
    x.VM.start_on(make_vm(x, "filler", 6 * GiB, sr=sr), h2, False, False)
    free = x.host.compute_free_memory(h2)
    assert failure(x.VM.pool_migrate, hog, h2, {}) == ["HOST_NOT_ENOUGH_FREE_MEMORY", need, free]
    assert x.VM.get_resident_on(hog) == h1
    h3 = host_ref(x, "h3")
    x.host.disable(h3)
    assert failure(x.VM.pool_migrate, vm, h3, {}) == ["HOST_DISABLED", h3]
    halted = make_vm(x, "halted", sr=sr)
    assert failure(x.VM.pool_migrate, halted, h1, {}) == ["VM_BAD_POWER_STATE", halted, "running", "halted"]


def test_disable_and_evacuate(pool):
    _sim, x = pool
    h1, h2, h3 = (host_ref(x, n) for n in ("h1", "h2", "h3"))
    sr = make_nfs_sr(x)
    vms = [make_vm(x, f"ev{i}", 2 * GiB, sr=sr) for i in range(4)]
    for v in vms:
        x.VM.start_on(v, h2, False, False)
    x.host.disable(h2)
    assert x.host.get_enabled(h2) is False
    assert x.host.get_vms_which_prevent_evacuation(h2) == {}
    x.host.evacuate(h2)
    assert [v for v in x.host.get_resident_VMs(h2) if not x.VM.get_is_control_domain(v)] == []
    where = {x.VM.get_resident_on(v) for v in vms}
    assert where <= {h1, h3} and len(where) == 2  # spread by free memory
    assert all(x.VM.get_power_state(v) == "Running" for v in vms)
    # nowhere to go: every other host disabled
    x.host.enable(h2)
    x.host.disable(h3)
    x.host.disable(h2)
    blocked = x.host.get_vms_which_prevent_evacuation(h1)
    on_h1 = [v for v in vms if x.VM.get_resident_on(v) == h1]
    assert set(blocked) == set(on_h1) and all(b == ["NO_HOSTS_AVAILABLE", v] for v, b in blocked.items())
    assert failure(x.host.evacuate, h1)[0] == "NO_HOSTS_AVAILABLE"


def test_evacuate_reports_memory_shortfall(pool):
    _sim, x = pool
    h1, h2, h3 = (host_ref(x, n) for n in ("h1", "h2", "h3"))
    sr = make_nfs_sr(x)
    big = make_vm(x, "big", 10 * GiB, sr=sr)
    x.VM.start_on(big, h1, False, False)
    for h in (h2, h3):
        x.VM.start_on(make_vm(x, f"fill-{h[-4:]}", 9 * GiB, sr=sr), h, False, False)
    assert x.host.get_vms_which_prevent_evacuation(h1) == {big: ["HOST_NOT_ENOUGH_FREE_MEMORY", big]}
    assert failure(x.host.assert_can_evacuate, h1) == ["CANNOT_EVACUATE_HOST", f"HOST_NOT_ENOUGH_FREE_MEMORY,{big}"]


def test_allowed_operations_follow_power_state(sim):
    x = connect(sim).xenapi
    vm = make_vm(x, "ops")
    halted = set(x.VM.get_allowed_operations(vm))
    assert {"start", "start_on", "clone", "destroy"} <= halted and "clean_shutdown" not in halted
    x.VM.start(vm, False, False)
    running = set(x.VM.get_allowed_operations(vm))
    assert {"clean_shutdown", "hard_shutdown", "pool_migrate", "pause", "snapshot"} <= running
    assert "start" not in running and "destroy" not in running
    (tpl,) = x.VM.get_by_name_label("Other install media")
    assert "start" not in x.VM.get_allowed_operations(tpl) and "clone" in x.VM.get_allowed_operations(tpl)


def test_snapshot_and_revert(sim):
    x = connect(sim).xenapi
    sr = x.pool.get_default_SR(x.pool.get_all()[0])
    vm = make_vm(x, "snappy", 2 * GiB, sr=sr)
    x.VM.start(vm, False, False)
    snap = x.VM.snapshot(vm, "before")
    srec = x.VM.get_record(snap)
    assert srec["is_a_snapshot"] and srec["is_a_template"] and srec["snapshot_of"] == vm
    assert x.VM.get_snapshots(vm) == [snap]
    (svbd,) = srec["VBDs"]
    svdi = x.VBD.get_VDI(svbd)
    (orig_vbd,) = x.VM.get_VBDs(vm)
    orig_vdi = x.VBD.get_VDI(orig_vbd)
    assert x.VDI.get_snapshot_of(svdi) == orig_vdi and x.VDI.get_is_a_snapshot(svdi)
    x.VM.set_memory_dynamic_range(vm, str(GiB), str(GiB))
    x.VM.revert(snap)
    rec = x.VM.get_record(vm)
    assert rec["power_state"] == "Halted" and rec["memory_dynamic_max"] == str(2 * GiB)
    (new_vbd,) = rec["VBDs"]
    assert x.VBD.get_VDI(new_vbd) not in (svdi, orig_vdi)  # a fresh clone of the snapshot disk
    assert failure(x.VBD.get_record, orig_vbd)[0] == "HANDLE_INVALID"


def test_domain_type_and_hvm_boot_policy_follow_each_other_as_in_xapi(sim):
    x = connect(sim).xenapi
    legacy = vm_record("legacy-hvm")
    legacy.pop("domain_type", None)
    legacy["HVM_boot_policy"] = "BIOS order"  # a client that predates domain_type
    vm = x.VM.create(legacy)
    assert x.VM.get_domain_type(vm) == "hvm"
    unspecified = vm_record("legacy-pv")
    unspecified.update(domain_type="unspecified", HVM_boot_policy="")
    assert x.VM.get_domain_type(x.VM.create(unspecified)) == "pv"
    pvh = vm_record("pvh")
    pvh.update(domain_type="pvh", HVM_boot_policy="")
    pvh_vm = x.VM.create(pvh)
    assert (x.VM.get_domain_type(pvh_vm), x.VM.get_HVM_boot_policy(pvh_vm)) == ("pvh", "")
    x.VM.set_domain_type(pvh_vm, "hvm")
    assert x.VM.get_HVM_boot_policy(pvh_vm) == "BIOS order"
    x.VM.set_HVM_boot_policy(pvh_vm, "")
    assert x.VM.get_domain_type(pvh_vm) == "pv"
    assert failure(x.VM.set_domain_type, pvh_vm, "unspecified") == ["INVALID_VALUE", "domain_type", "unspecified"]
    x.VM.start(vm, False, False)
    assert x.VM_metrics.get_current_domain_type(x.VM.get_metrics(vm)) == "hvm"
    assert failure(x.VM.set_domain_type, vm, "pv") == ["VM_BAD_POWER_STATE", vm, "halted", "running"]
