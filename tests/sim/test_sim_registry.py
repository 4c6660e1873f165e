"""The datamodel is the source of truth; the registry says what is simulated."""

from __future__ import annotations

import re
from pathlib import Path

from xenlab.sim import datamodel, implemented_messages
from xenlab.sim.codes import SR_BACKEND_PREFIX, XAPI_CORE_CODES
from xenlab.sim.dispatch import CUSTOM

SIM_DIR = Path(datamodel.__file__).parent


def test_registry_contents():
    msgs = implemented_messages()
    dm = datamodel.get()
    assert len(msgs) == len(set(msgs)) > 1000
    for must in (
        "session.login_with_password",
        "pool.join",
        "pool.enable_ha",
        "VM.start",
        "VM.pool_migrate",
        "host.evacuate",
        "event.from",
        "SR.create",
        "VM.get_all_records_where",
        "host_metrics.get_live",
        "VM.add_to_other_config",
    ):
        assert must in msgs
    for absent in ("host.dmesg", "VM.set_power_state", "host.license_apply", "host_metrics.get_memory_free"):
        assert absent not in msgs
    for name in msgs:
        cls, _, msg = name.partition(".")
        assert msg == "get_all_records_where" or dm.message(cls, msg) is not None, name


def test_custom_handlers_name_real_messages():
    dm = datamodel.get()
    for name in CUSTOM:
        cls, _, msg = name.partition(".")
        m = dm.message(cls, msg)
        assert m is not None, f"{name} is not in the datamodel"
        assert not m.removed


def test_every_raised_code_is_known():
    dm = datamodel.get()
    src = "\n".join(p.read_text() for p in SIM_DIR.rglob("*.py"))
    codes = set(re.findall(r'ApiError\(\s*"([A-Z][A-Z0-9_]+)"', src))
    codes |= set(re.findall(r'\(\s*"([A-Z][A-Z0-9_]+)",\s*\[', src))  # planner tuples
    assert "VM_BAD_POWER_STATE" in codes and "SESSION_INVALID" in codes
    unknown = {
        c for c in codes if c not in dm.error_codes and c not in XAPI_CORE_CODES and not c.startswith(SR_BACKEND_PREFIX)
    }
    assert unknown == set()


def test_types_and_enums_come_from_the_export():
    dm = datamodel.get()
    assert dm.enum_values("vm_power_state") == ("Halted", "Paused", "Running", "Suspended")
    f = dm.cls("VM").fields["resident_on"]
    assert (f.type.kind, f.type.name, f.default) == ("ref", "host", "OpaqueRef:NULL")
    assert dm.cls("network").fields["MTU"].default == 1500
    assert dm.message("VM", "start").args[0].name == "vm"
