"""Toolstack drivers: what scenarios speak to form pools and move guests (xl, xapi)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .base import Toolstack

if TYPE_CHECKING:
    from ..lab import Lab


def make_toolstack(lab: "Lab") -> Toolstack:
    """The driver for a lab's hosts: xapi where the lab says so (sim labs), else xl for Debian Xen hosts."""
    if getattr(lab, "toolstack_kind", "xl") == "xapi":
        from .xapi import XapiToolstack

        return XapiToolstack(lab.xapi_access())
    from .xl import XlToolstack

    return XlToolstack(lab)


__all__ = ["Toolstack", "make_toolstack"]
