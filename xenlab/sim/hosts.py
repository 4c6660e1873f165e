"""Facts about simulated hosts and VMs: sizes, versions, templates, xapi's VM lifecycle table, SimHost."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from . import datamodel as dmod
from .model import Database

GiB = 1024**3
MiB = 1024**2

DEFAULT_HOST_MEMORY = 256 * GiB
DEFAULT_DOM0_MEMORY = 4 * GiB
DEFAULT_HOST_CPUS = 16
HA_DEFAULT_TIMEOUT = 60.0  # seconds; xapi's default HA timeout base
HOST_ASSUMED_DEAD = 600.0  # seconds; without HA the master notices after 10 min

API_VERSION = (2, 21)
PRODUCT_VERSION = "8.3.0"
DEFAULT_CPU_FEATURES = "1fcbfbff-f7fa3223-2d93fbff-00000423"  # cpu_info features words, as xapi shows them

# Templates every fresh pool gets: (name, memory, vcpus, disk size or 0, hvm)
TEMPLATES = [
    ("Other install media", 1 * GiB, 1, 0, True),
    ("Debian Bookworm 12", 1 * GiB, 1, 10 * GiB, False),
    ("CentOS Stream 9", 2 * GiB, 2, 20 * GiB, True),
]

PROVISION_XML = '<provision><disk device="0" size="{size}" sr="" bootable="true" type="system"/></provision>'


# Power states in which xapi allows each VM operation (its lifecycle table).
_ALL = ("Halted", "Paused", "Running", "Suspended")
VM_OP_STATES: dict[str, tuple[str, ...]] = {
    **dict.fromkeys(
        ("changing_VCPUs", "changing_static_range", "changing_memory_limits", "changing_shadow_memory"), ("Halted",)
    ),
    **dict.fromkeys(("changing_NVRAM", "make_into_template", "provision", "start", "start_on"), ("Halted",)),
    "create_vtpm": ("Halted",),
    "unpause": ("Paused",),
    **dict.fromkeys(("csvm", "resume", "resume_on"), ("Suspended",)),
    **dict.fromkeys(
        (
            "awaiting_memory_live",
            "call_plugin",
            "clean_reboot",
            "clean_shutdown",
            "changing_memory_live",
            "changing_shadow_memory_live",
            "changing_VCPUs_live",
            "data_source_op",
            "pause",
            "pool_migrate",
            "send_sysrq",
            "send_trigger",
            "snapshot_with_quiesce",
            "suspend",
        ),
        ("Running",),
    ),
    "changing_dynamic_range": ("Halted", "Running"),
    "clone": ("Halted",),
    "copy": ("Halted",),
    **dict.fromkeys(("create_template", "destroy", "export"), ("Halted", "Suspended")),
    "hard_reboot": ("Paused", "Running"),
    **dict.fromkeys(("checkpoint", "get_boot_record", "shutdown", "hard_shutdown"), ("Paused", "Suspended", "Running")),
    "migrate_send": ("Halted", "Suspended", "Running"),
    **dict.fromkeys(
        (
            "assert_operation_valid",
            "metadata_export",
            "power_state_reset",
            "revert",
            "reverting",
            "snapshot",
            "update_allowed_operations",
            "query_services",
        ),
        _ALL,
    ),
}
# xapi_vm_lifecycle.check_template: what a template allows (destroy and migrate_send only when it is
# not a default template); check_snapshot: what a snapshot allows
TEMPLATE_OPS = {
    "changing_dynamic_range",
    "changing_static_range",
    "changing_memory_limits",
    "changing_shadow_memory",
    "changing_VCPUs",
    "changing_NVRAM",
    "clone",
    "copy",
    "export",
    "metadata_export",
    "provision",
}
SNAPSHOT_OPS = {"revert", "clone", "copy", "export", "destroy", "hard_shutdown", "metadata_export"}


def template_allows(rec: dict[str, Any], op: str) -> bool:
    default = rec["is_default_template"] or rec["other_config"].get("default_template", "").lower() in ("true", "1")
    return op in TEMPLATE_OPS or (op in ("destroy", "migrate_send") and not default)


_CONTROL_DOMAIN_OPS = {"clean_reboot", "clean_shutdown", "hard_reboot", "hard_shutdown", "query_services"}
# operations the advisory list leaves out (xapi only lists user-facing ones)
_NOT_ADVERTISED = {"assert_operation_valid", "update_allowed_operations", "reverting", "awaiting_memory_live", "csvm"}


def vm_allowed_operations(dm: dmod.Datamodel, rec: dict[str, Any]) -> list[str]:
    ops = []
    for op in dm.enums.get("vm_operations", ()):
        states = VM_OP_STATES.get(op)
        if not states or op in _NOT_ADVERTISED or rec["power_state"] not in states:
            continue
        if rec["is_a_snapshot"] and op not in SNAPSHOT_OPS:
            continue
        if rec["is_a_template"] and not rec["is_a_snapshot"] and not template_allows(rec, op):
            continue
        if rec["is_control_domain"] and op not in _CONTROL_DOMAIN_OPS:
            continue
        ops.append(op)
    return ops


@dataclass
class SimHost:
    """One physical host: identity, hardware, and simulated process state."""

    index: int
    name: str
    address: str
    uuid: str
    ref: str
    memory_total: int
    cpus: int
    db: Database | None = None
    alive: bool = True  # xapi process reachable at all
    isolated: bool = False  # alive but cut from the other hosts
    fenced: bool = False  # self-fenced by HA; down until healed
    down_since: float | None = None
    on_state_change: list[Callable[[SimHost], None]] = field(default_factory=list)

    @property
    def serving(self) -> bool:
        """Whether the host's HTTP endpoint answers."""
        return self.alive and not self.fenced
