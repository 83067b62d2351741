"""Readers of the public benchmark formats: VRPLIB (CVRP) and Solomon (VRPTW).

Conventions of /work/shared/benchmarks/vrp/README.md (they change the optimal values):
- CVRP (EUC_2D): Euclidean distance rounded to the nearest integer; the fleet is the
  `k` in the instance's name (A, P, E sets), or unlimited for the X set unless given.
- VRPTW (Solomon): distance only, Euclidean distance truncated to one decimal. We scale
  every distance and time by 10 so the truncation is exact in integers (cost / 10 is the
  published value); the vehicles and their capacity come from the file.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

from routing.solver.problem import Depot, Problem, Stop, Vehicle

# Solomon distances are truncated to one decimal: integers in tenths.
SOLOMON_SCALE = 10


class InstanceFormatError(ValueError):
    """The file is not a readable VRPLIB/Solomon instance; the message says where."""


@dataclass(frozen=True)
class Instance:
    problem: Problem
    scale: int  # divide an objective by this to get the published cost
    kind: str  # "CVRP" | "VRPTW"


def read_instance(
    path: str | Path, customers: int | None = None, vehicles: int | None = None
) -> Instance:
    """Read a VRPLIB `.vrp` or a Solomon `.txt` file, by its content."""
    path = Path(path)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise InstanceFormatError(f"{path}: cannot read: {exc}") from exc
    head = text.lstrip()[:2000].upper()
    if "NODE_COORD_SECTION" in head or re.search(r"^\s*TYPE\s*:", head, re.M):
        return read_vrplib(path, text, vehicles=vehicles)
    if "CUSTOMER" in head and "VEHICLE" in head:
        return read_solomon(path, text, customers=customers, vehicles=vehicles)
    raise InstanceFormatError(f"{path}: neither a VRPLIB (CVRP) nor a Solomon (VRPTW) instance")


def _vrplib_parts(path: Path, text: str) -> tuple[dict[str, str], dict[str, list[list[str]]]]:
    """The `KEY : value` specification and the `*_SECTION` rows of a VRPLIB file."""
    spec: dict[str, str] = {}
    sections: dict[str, list[list[str]]] = {}
    current: str | None = None
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line == "EOF":
            continue
        if (":" in line and current is None) or re.match(r"^[A-Z_]+\s*:", line):
            key, _, value = line.partition(":")
            spec[key.strip().upper()] = value.strip().strip('"')
            current = None
        elif line.upper().endswith("_SECTION"):
            current = line.upper()
            sections[current] = []
        elif current is not None:
            sections[current].append(line.split())
        else:
            raise InstanceFormatError(f"{path}:{lineno}: unexpected line {line[:40]!r}")
    return spec, sections


def read_vrplib(path: Path, text: str, vehicles: int | None = None) -> Instance:
    spec, sections = _vrplib_parts(path, text)
    if spec.get("TYPE", "").upper() != "CVRP":
        raise InstanceFormatError(f"{path}: TYPE must be CVRP, not {spec.get('TYPE')!r}")
    if spec.get("EDGE_WEIGHT_TYPE", "").upper() != "EUC_2D":
        raise InstanceFormatError(f"{path}: only EDGE_WEIGHT_TYPE EUC_2D is supported")
    for needed in ("DIMENSION", "CAPACITY"):
        if not spec.get(needed, "").isdigit():
            raise InstanceFormatError(f"{path}: {needed} missing or not an integer")
    for needed in ("NODE_COORD_SECTION", "DEMAND_SECTION", "DEPOT_SECTION"):
        if needed not in sections:
            raise InstanceFormatError(f"{path}: {needed} missing")
    n = int(spec["DIMENSION"])
    capacity = int(spec["CAPACITY"])
    try:
        coords = {int(r[0]): (float(r[1]), float(r[2])) for r in sections["NODE_COORD_SECTION"]}
        demand = {int(r[0]): int(r[1]) for r in sections["DEMAND_SECTION"]}
        depot_ids = [int(r[0]) for r in sections["DEPOT_SECTION"] if int(r[0]) != -1]
    except (ValueError, IndexError) as exc:
        raise InstanceFormatError(f"{path}: malformed section line: {exc}") from exc
    if sorted(coords) != list(range(1, n + 1)) or sorted(demand) != list(range(1, n + 1)):
        raise InstanceFormatError(f"{path}: coordinates and demands must number 1..{n}")
    if len(depot_ids) != 1:
        raise InstanceFormatError(f"{path}: exactly one depot expected, found {len(depot_ids)}")
    depot = depot_ids[0]
    order = [depot] + [i for i in range(1, n + 1) if i != depot]
    points = [coords[i] for i in order]
    dist = tuple(tuple(_nint(math.dist(a, b)) for b in points) for a in points)
    name = spec.get("NAME", path.stem)
    if vehicles is None:
        match = re.search(r"-k(\d+)", name)
        vehicles = n - 1 if name.upper().startswith("X-") or not match else int(match.group(1))
    problem = Problem(
        depots=(Depot("depot", 0),),
        facilities=(),
        stops=tuple(Stop(str(i), loc, (demand[i],)) for loc, i in enumerate(order) if loc > 0),
        vehicles=tuple(
            Vehicle(f"v{k + 1}", "depot", "depot", (capacity,)) for k in range(vehicles)
        ),
        distance=dist,
        duration=dist,
        name=name,
        coords=tuple(points),
    )
    return Instance(problem, 1, "CVRP")


def read_solomon(
    path: Path, text: str, customers: int | None = None, vehicles: int | None = None
) -> Instance:
    lines = [line.split() for line in text.splitlines() if line.strip()]
    name = lines[0][0] if lines and len(lines[0]) == 1 else path.stem
    try:
        v_row = next(i for i, row in enumerate(lines) if row and row[0].upper() == "VEHICLE")
        fleet, capacity = (int(x) for x in lines[v_row + 2][:2])
        c_row = next(i for i, row in enumerate(lines) if row and row[0].upper() == "CUSTOMER")
        rows = [[float(x) for x in row] for row in lines[c_row + 2 :]]
    except (StopIteration, ValueError, IndexError) as exc:
        raise InstanceFormatError(
            f"{path}: not a Solomon file (VEHICLE/CUSTOMER blocks): {exc}"
        ) from exc
    if not rows or any(len(r) != 7 for r in rows) or int(rows[0][0]) != 0:
        raise InstanceFormatError(
            f"{path}: each customer line needs 7 numbers, the depot (0) first"
        )
    if customers is not None:
        if not 1 <= customers < len(rows):
            raise InstanceFormatError(
                f"{path}: has {len(rows) - 1} customers, {customers} asked for"
            )
        rows = rows[: customers + 1]
        name = f"{name}.{customers}"
    s = SOLOMON_SCALE
    points = [(r[1], r[2]) for r in rows]
    # Truncation to one decimal, exactly: floor(10 * d) = isqrt(100 * (dx² + dy²)) for
    # integer coordinates.
    dist = tuple(tuple(_trunc_scaled(a, b, s) for b in points) for a in points)
    depot_row = rows[0]
    depot = Depot("depot", 0, open=int(depot_row[4] * s), close=int(depot_row[5] * s))
    stops = tuple(
        Stop(
            str(int(r[0])),
            loc,
            (int(r[3]),),
            service=round(r[6] * s),
            window=(round(r[4] * s), round(r[5] * s)),
        )
        for loc, r in enumerate(rows)
        if loc > 0
    )
    fleet = vehicles if vehicles is not None else fleet
    problem = Problem(
        depots=(depot,),
        facilities=(),
        stops=stops,
        vehicles=tuple(
            Vehicle(
                f"v{k + 1}",
                "depot",
                "depot",
                (capacity,),
                shift_start=depot.open,
                shift_end=depot.close,
            )
            for k in range(fleet)
        ),
        distance=dist,
        duration=dist,
        name=name,
        coords=tuple(points),
    )
    return Instance(problem, s, "VRPTW")


def _nint(x: float) -> int:
    return math.floor(x + 0.5)


def _trunc_scaled(a: tuple[float, float], b: tuple[float, float], scale: int) -> int:
    dx, dy = a[0] - b[0], a[1] - b[1]
    if dx.is_integer() and dy.is_integer():
        return math.isqrt(int(scale * scale * (dx * dx + dy * dy)))
    return math.floor(scale * math.hypot(dx, dy) + 1e-9)
