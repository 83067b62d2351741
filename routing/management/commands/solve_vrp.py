"""manage.py solve_vrp FILE: solve a VRPLIB (CVRP) or Solomon (VRPTW) file and print the plan.

Conventions (rounding, fleet) as in ../shared/benchmarks/vrp/README.md; see
routing/solver/readers.py. The plan is re-checked by our own feasibility check.
"""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from routing.solver import InfeasibleProblem, InstanceFormatError, check_plan, read_instance, solve


class Command(BaseCommand):
    help = (
        "Solve a VRPLIB (CVRP) or Solomon (VRPTW) instance file; print cost, routes, feasibility."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file")
        parser.add_argument("--time-limit", type=float, default=10.0, help="seconds (default 10)")
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument(
            "--customers", type=int, help="Solomon: first N customers only (e.g. 25)"
        )
        parser.add_argument("--vehicles", type=int, help="fleet size (default: from the file/name)")
        parser.add_argument("--json", action="store_true", help="print JSON instead of text")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["time_limit"] <= 0:
            raise CommandError("--time-limit must be positive")
        try:
            instance = read_instance(options["file"], options["customers"], options["vehicles"])
            plan = solve(instance.problem, options["time_limit"], options["seed"])
        except InstanceFormatError as exc:
            raise CommandError(str(exc)) from exc
        except InfeasibleProblem as exc:
            raise CommandError(f"{options['file']}: {exc}") from exc
        steps = [(r.vehicle_id, [(v.kind, v.id) for v in r.visits]) for r in plan.routes]
        violations = check_plan(instance.problem, steps)[2]
        scale = instance.scale
        result = {
            "instance": instance.problem.name,
            "type": instance.kind,
            "cost": plan.cost / scale,
            "feasible": not violations,
            "violations": [str(v) for v in violations],
            "routes": [
                {"vehicle": r.vehicle_id, "stops": r.stop_ids, "distance": r.distance / scale}
                for r in plan.routes
            ],
            "stats": plan.stats,
        }
        if options["json"]:
            self.stdout.write(json.dumps(result, indent=2))
            return
        self.stdout.write(f"{result['instance']} ({instance.kind}): cost {result['cost']:g}")
        for i, r in enumerate(plan.routes, 1):
            self.stdout.write(f"Route #{i}: {' '.join(r.stop_ids)}")
        verdict = "feasible" if not violations else "INFEASIBLE: " + "; ".join(map(str, violations))
        self.stdout.write(
            f"{len(plan.routes)} routes, {verdict}, {plan.stats['runtime_seconds']} s"
        )
