"""Scenarios: steps with expectations, validated from YAML and run against a lab's pool."""

from ..lab.contract import FaultHandle, FaultInjector, Observer
from .expect import Expectation, ExpectationError, parse_expectation
from .model import FIGURES, Scenario, Step, check_against_lab, load_scenario, parse_scenario
from .runner import run_scenario
from .struck import ActiveFault

__all__ = [
    "FIGURES",
    "ActiveFault",
    "Expectation",
    "ExpectationError",
    "FaultHandle",
    "FaultInjector",
    "Observer",
    "Scenario",
    "Step",
    "check_against_lab",
    "load_scenario",
    "parse_expectation",
    "parse_scenario",
    "run_scenario",
]
