"""Toolstack drivers: what scenarios speak to form pools and move guests (xl, later xapi)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .base import Toolstack

if TYPE_CHECKING:
    from ..lab import Lab


def make_toolstack(lab: "Lab") -> Toolstack:
    """The driver for a lab's hosts (xl for Debian Xen hosts)."""
    from .xl import XlToolstack

    return XlToolstack(lab)


__all__ = ["Toolstack", "make_toolstack"]
