"""Labs behind one contract (`contract.LabBackend`): QEMU machines (`lab.Lab`) and
simulated xapi pools (`sim.SimLab`); finding, starting and stopping them (`labs`)."""

from .contract import READY, Capabilities, LabBackend
from .host import Host
from .lab import Lab, attach_lab, running_labs
from .labs import LabRef, down_all, down_lab, make_lab, open_lab, resolve_lab, running_lab, up_lab
from .sim import SimLab

__all__ = ["READY", "Capabilities", "Host", "Lab", "LabBackend", "LabRef", "SimLab", "attach_lab", "down_all",
           "down_lab", "make_lab", "open_lab", "resolve_lab", "running_lab", "running_labs", "up_lab"]
