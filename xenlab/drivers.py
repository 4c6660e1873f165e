"""Where a lab meets its drivers: the toolstack, observer and fault injector that serve it.

This is the one place that knows every kind of lab and every driver, so neither has to
know the other: a lab declares which toolstack speaks to its hosts
(`Capabilities.toolstack`), and the drivers only see a lab through what they need of it.
The scenario session, the pytest plugin and the benchmarks all get their drivers here.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import XenlabError
from .faults import Faults
from .lab.contract import FaultInjector, LabBackend, Observer
from .observe import LabObserver
from .toolstack.base import Toolstack
from .toolstack.xapi import XapiToolstack
from .toolstack.xl import XlToolstack


@dataclass
class Drivers:
    """What a scenario (or a test) acts through on one lab."""

    toolstack: Toolstack
    observer: Observer
    faults: FaultInjector


def drivers_for(lab: LabBackend) -> Drivers:
    """The drivers of a running lab, from what its contract declares, never from its class.

    The toolstack is the one its capabilities name (xapi through the lab's `xapi_access()`,
    xl over its hosts' shells); a lab that injects its own faults (a simulator, BMCs and dom0
    firewalls) or observes its guests its own way offers `faults()` / `observer()`, and every
    other lab gets the shared ones (QMP and vde faults, heartbeats read on its services
    node). A new backend is one new module: nothing here names it."""
    kind = lab.capabilities.toolstack
    if kind == "xapi":
        access = getattr(lab, "xapi_access", None)
        if access is None:
            raise XenlabError(f"lab {lab.name} declares toolstack xapi but offers no xapi access")
        toolstack: Toolstack = XapiToolstack(access())
    elif kind == "xl":
        toolstack = XlToolstack(lab)  # type: ignore[arg-type] - hosts with shells and a services node
    else:
        raise XenlabError(f"no toolstack driver {kind!r} for lab {lab.name}")
    own_observer = getattr(lab, "observer", None)
    observer = own_observer() if own_observer is not None else None
    own_faults = getattr(lab, "faults", None)
    faults = own_faults() if own_faults is not None else Faults(lab)  # type: ignore[arg-type]
    return Drivers(toolstack, observer if observer is not None else LabObserver(lab), faults)  # type: ignore[arg-type]


def toolstack_for(lab: LabBackend) -> Toolstack:
    return drivers_for(lab).toolstack


def pool_cluster_status(ref: str | None) -> dict | None:
    """An xl pool's cluster membership and quorum as its own stack reports them (for
    `xenlab status`), or None: no such lab up, not xl, no pool yet, or a pool without the stack."""
    from .lab.labs import attach_lab, make_lab, resolve_lab, running_lab
    from .spec import load_lab

    try:
        if ref is None:
            lab = running_lab(None)
        else:
            found = resolve_lab(ref, attach="first")
            lab = attach_lab(found.name) if found.running else make_lab(load_lab(found.path), found.path)
        if lab.capabilities.toolstack != "xl":
            return None
        toolstack = toolstack_for(lab)
        cluster = toolstack.cluster() if isinstance(toolstack, XlToolstack) else None
        return cluster.status() if cluster is not None else None
    except XenlabError as exc:
        return {"error": str(exc).splitlines()[0]}
