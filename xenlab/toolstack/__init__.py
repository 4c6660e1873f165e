"""Toolstack drivers: what scenarios speak to form pools and move guests (xl, xapi).

Which driver serves a lab is decided in `xenlab.drivers` (from the lab's capabilities).
"""

from __future__ import annotations

from .base import Toolstack

__all__ = ["Toolstack"]
