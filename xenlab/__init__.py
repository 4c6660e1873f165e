"""xenlab: pools of real Xen hosts nested in QEMU, scripted and measured from pytest."""

__version__ = "0.1.0"
