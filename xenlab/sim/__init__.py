"""Protocol-faithful XAPI simulator driven by xapi's datamodel export.

Entry points: ``xenlab.sim.server.SimServer`` (in-process, background
threads), ``xenlab.sim.server.serve_forever`` (CLI), and
``implemented_messages()`` for the registry of simulated calls.
"""

from __future__ import annotations


def implemented_messages() -> list[str]:
    """Wire names (``Class.message``) the simulator answers with real behaviour."""
    from . import datamodel, dispatch

    return dispatch.implemented_messages(datamodel.get())


def __getattr__(name: str):
    if name in ("SimServer", "serve_forever"):
        from . import server

        return getattr(server, name)
    raise AttributeError(name)


__all__ = ["SimServer", "implemented_messages", "serve_forever"]
