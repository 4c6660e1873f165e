"""A running lab: QEMU machines, vde switches, SSH and QMP access, checkpoints."""

from .lab import Lab, attach_lab, running_labs
from .host import Host

__all__ = ["Lab", "Host", "attach_lab", "running_labs"]
