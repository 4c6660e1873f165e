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
from .lab import Lab
from .lab.contract import FaultInjector, LabBackend, Observer
from .lab.sim import SimLab
from .lab.static import StaticLab, UnobservedGuests
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
    """The drivers of a running lab, as its kind and declared toolstack say."""
    if isinstance(lab, SimLab):
        return Drivers(XapiToolstack(lab.xapi_access()), lab.observer(), lab.faults())
    if isinstance(lab, Lab) and lab.capabilities.toolstack == "xl":
        return Drivers(XlToolstack(lab), LabObserver(lab), Faults(lab))
    if isinstance(lab, StaticLab) and lab.capabilities.toolstack == "xl":
        # the xl driver and the observer speak to a static lab's hosts and services node as
        # to a QEMU lab's (SSH, addresses on the pool network); faults go through BMCs and dom0 firewalls
        return Drivers(XlToolstack(lab), LabObserver(lab), lab.faults())  # type: ignore[arg-type]
    if isinstance(lab, StaticLab) and lab.capabilities.toolstack == "xapi":
        # XCP-ng hosts: the XAPI driver over their xapi; heartbeats through the services node's
        # collector when xenlab can log in there; power faults through BMCs
        observer = LabObserver(lab) if lab.services is not None else UnobservedGuests(lab)  # type: ignore[arg-type]
        return Drivers(XapiToolstack(lab.xapi_access()), observer, lab.faults())
    raise XenlabError(f"no drivers for lab {lab.name}: a {type(lab).__name__} with toolstack "
                      f"{lab.capabilities.toolstack}")


def toolstack_for(lab: LabBackend) -> Toolstack:
    return drivers_for(lab).toolstack
