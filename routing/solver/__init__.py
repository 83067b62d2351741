"""Vehicle-routing solver adapter (PyVRP behind our own dataclasses and checker).

See docs/routing.md. Import from here: the submodules are an implementation detail.
"""

from routing.solver.adapter import ProgressCallback, solve
from routing.solver.check import Violation, check_plan, simulate_route
from routing.solver.diagnose import InfeasibleProblem, diagnose
from routing.solver.problem import (
    COST_UNIT,
    UNBOUNDED,
    Depot,
    Facility,
    Plan,
    Problem,
    RoutePlan,
    Stop,
    Vehicle,
    Visit,
)
from routing.solver.readers import Instance, InstanceFormatError, read_instance

__all__ = [
    "COST_UNIT",
    "UNBOUNDED",
    "Depot",
    "Facility",
    "InfeasibleProblem",
    "Instance",
    "InstanceFormatError",
    "Plan",
    "Problem",
    "ProgressCallback",
    "RoutePlan",
    "Stop",
    "Vehicle",
    "Violation",
    "Visit",
    "check_plan",
    "diagnose",
    "read_instance",
    "simulate_route",
    "solve",
]
