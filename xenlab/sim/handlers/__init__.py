"""Custom (non-accessor) XAPI messages, one module per class family.

Error codes and their parameter lists follow what xapi raises for the same
situation; each handler runs with the deployment lock held.  ``registry()``
merges the modules listed in ``FAMILIES``: a module not listed here implements
nothing, and a message implemented by two modules is an error.
"""

from __future__ import annotations

from ..calls import Handlers, Impl
from . import event, ha, host, message, network, pool, session, storage, task, vm, vm_clone

FAMILIES: tuple[Handlers, ...] = (
    session.HANDLERS,
    task.HANDLERS,
    event.HANDLERS,
    message.HANDLERS,
    pool.HANDLERS,
    ha.HANDLERS,
    host.HANDLERS,
    storage.HANDLERS,
    network.HANDLERS,
    vm.HANDLERS,
    vm_clone.HANDLERS,
)


def registry() -> dict[str, Impl]:
    """Wire name -> implementation of every custom message."""
    out: dict[str, Impl] = {}
    for family in FAMILIES:
        for name, impl in family.table.items():
            if name in out:
                raise ValueError(f"{name} is implemented by two handler modules ({family.family} and another)")
            out[name] = impl
    return out
