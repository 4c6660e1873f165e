"""Error codes the simulator raises that no message in the export declares.

xapi raises many codes generically (dispatcher, database layer, pool join
pre-checks) rather than per message, so the export's per-message ``errors``
lists do not mention them.  The names below are xapi's own (``Api_errors``);
tests check that every code the simulator raises is either declared in the
export or listed here, so a typo cannot slip onto the wire.
"""

XAPI_CORE_CODES = frozenset(
    {
        # dispatcher / marshalling
        "MESSAGE_METHOD_UNKNOWN",
        "MESSAGE_PARAMETER_COUNT_MISMATCH",
        "MESSAGE_REMOVED",
        "NOT_IMPLEMENTED",
        "FIELD_TYPE_ERROR",
        "SESSION_INVALID",
        # database layer
        "HANDLE_INVALID",
        "UUID_INVALID",
        "MAP_DUPLICATE_KEY",
        # events
        "EVENT_FROM_TOKEN_PARSE_FAILURE",
        # pool join pre-checks
        "JOINING_HOST_CANNOT_BE_MASTER_OF_OTHER_HOSTS",
        "JOINING_HOST_CANNOT_HAVE_RUNNING_VMS",
        "JOINING_HOST_CANNOT_HAVE_VMS_WITH_CURRENT_OPERATIONS",
        "JOINING_HOST_CONNECTION_FAILED",
        "POOL_HOSTS_NOT_HOMOGENEOUS",
        "POOL_JOINING_HOST_MUST_HAVE_SAME_PRODUCT_VERSION",
        # HA
        "HA_NOT_ENABLED",
        "HOST_OFFLINE",
        "CANNOT_CREATE_STATE_FILE",
        # hosts
        "CANNOT_EVACUATE_HOST",
        "HOST_EVACUATE_VM_NOT_HA_PROTECTED",
        "HOST_HAS_RESIDENT_VMS",
        "HOST_IS_LIVE",
        "HOST_NOT_DISABLED",
        # devices / networks / ops
        "DEVICE_ALREADY_EXISTS",
        "DEVICE_ALREADY_ATTACHED",
        "INVALID_DEVICE",
        "NETWORK_CONTAINS_PIF",
        "NETWORK_CONTAINS_VIF",
        "OPERATION_BLOCKED",
        "TASK_CANCELLED",
        # VM lifecycle checks (xapi_vm_lifecycle, xapi_vm_helpers) and VDI operation checks (xapi_vdi)
        "VM_IS_PROTECTED",
        "VM_IS_SNAPSHOT",
        "SR_HAS_NO_PBDS",
        "VM_MISSING_PV_DRIVERS",  # device hotplug into an HVM guest (xapi_pv_driver_version)
    }
)

# Storage backend failures are relayed by xapi as SR_BACKEND_FAILURE_<n>,
# where n is the SM driver's error number.
SR_BACKEND_PREFIX = "SR_BACKEND_FAILURE_"
