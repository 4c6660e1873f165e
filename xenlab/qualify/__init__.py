"""`xenlab qualify`: a hardware-qualification suite run on a lab (see `suite`)."""

from .model import SCHEMA, CheckOutcome, Measured, QualifyReport
from .suite import QualifyPlan, plan_qualify, run_qualify

__all__ = ["SCHEMA", "CheckOutcome", "Measured", "QualifyPlan", "QualifyReport", "plan_qualify", "run_qualify"]
