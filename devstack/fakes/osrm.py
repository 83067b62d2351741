"""Fake road-network matrix service in the shape of OSRM's table service.

Follows the OSRM HTTP API, table service (https://project-osrm.org/docs/v5.24.0/api/#table-service):
``GET /table/v1/{profile}/{lon},{lat};{lon},{lat}...[.json]`` with ``sources``,
``destinations`` (indices separated by ``;``, or ``all``) and ``annotations``
(``duration`` by default, ``distance``, or ``duration,distance``), answering
``{"code": "Ok", "durations": [[s]], "distances": [[m]], "sources": [...],
"destinations": [...]}`` with waypoints ``{"hint", "distance", "name", "location"}``.

Instead of a road network the fake uses great-circle (haversine) distance at a fixed
speed, so every answer is deterministic: ``speed_kmh`` (36 km/h, i.e. 10 m/s, unless
set). Errors as OSRM's ``{"code", "message"}``: ``InvalidUrl``, ``InvalidQuery``,
``InvalidValue``, ``InvalidOptions``, ``TooBig`` (over ``max_table_size`` = 100
coordinates, osrm-routed's default). Any HTTP client works; the project uses httpx.
"""

from __future__ import annotations

import contextlib
import math
import re
from collections.abc import Iterator
from typing import Any

from devstack.fakes.base import DEFAULT_HANG_SECONDS, FakeProvider, Handler, Request, Response

DEFAULT_PORT = 12115
EARTH_RADIUS_M = 6_372_797.560856  # the radius OSRM's own haversine uses
DEFAULT_SPEED_KMH = 36.0  # 10 m/s: a refuse truck's average in town, and easy arithmetic
MAX_TABLE_SIZE = 100  # osrm-routed --max-table-size default
_COORDINATE = re.compile(r"^(-?\d+(?:\.\d+)?),(-?\d+(?:\.\d+)?)$")


def haversine_m(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Great-circle distance in metres between two (lon, lat) points."""
    lon1, lat1, lon2, lat2 = map(math.radians, (*a, *b))
    h = (
        math.sin((lat2 - lat1) / 2) ** 2
        + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    )
    return 2 * EARTH_RADIUS_M * math.asin(math.sqrt(h))


def _error(status: int, code: str, message: str) -> Response:
    return Response.json(status, {"code": code, "message": message})


class OsrmFake(FakeProvider):
    name = "osrm"
    default_port = DEFAULT_PORT

    def __init__(
        self,
        *,
        speed_kmh: float = DEFAULT_SPEED_KMH,
        max_table_size: int = MAX_TABLE_SIZE,
        hang_seconds: float = DEFAULT_HANG_SECONDS,
    ) -> None:
        super().__init__(hang_seconds=hang_seconds)
        self.speed_kmh = speed_kmh
        self.max_table_size = max_table_size

    def routes(self) -> list[tuple[str, str, str, Handler]]:
        return [
            ("GET", r"/table/v1/(?P<profile>[^/]+)/(?P<coordinates>[^/]+)", "table", self._table)
        ]

    def error_response(
        self, status: int, message: str, headers: dict[str, str] | None = None
    ) -> Response:
        code = {404: "InvalidUrl", 429: "TooManyRequests"}.get(status, "InvalidQuery")
        if status >= 500:
            code = "InternalError"
        response = _error(status, code, message)
        response.headers.update(headers or {})
        return response

    def _table(self, request: Request, profile: str, coordinates: str) -> Response:
        coordinates = coordinates.removesuffix(".json")
        points: list[tuple[float, float]] = []
        for number, text in enumerate(coordinates.split(";")):
            match = _COORDINATE.match(text)
            if not match:
                return _error(
                    400, "InvalidQuery", f"Query string malformed close to position {number}"
                )
            lon, lat = float(match.group(1)), float(match.group(2))
            if not (-180 <= lon <= 180 and -90 <= lat <= 90):
                return _error(400, "InvalidValue", "Invalid coordinate value.")
            points.append((lon, lat))
        if len(points) < 2:
            return _error(400, "InvalidOptions", "Number of coordinates needs to be at least two.")
        if len(points) > self.max_table_size:
            return _error(400, "TooBig", "Too many table coordinates")
        try:
            sources = _indices(request.query.get("sources"), len(points))
            destinations = _indices(request.query.get("destinations"), len(points))
        except ValueError:
            return _error(400, "InvalidOptions", "Source or destination indices are invalid.")
        annotations = (request.query.get("annotations") or ["duration"])[0].split(",")
        if not set(annotations) <= {"duration", "distance"}:
            return _error(400, "InvalidQuery", "Query string malformed close to annotations")
        metres = [[haversine_m(points[s], points[d]) for d in destinations] for s in sources]
        speed_ms = self.speed_kmh / 3.6
        body: dict[str, Any] = {"code": "Ok"}
        if "duration" in annotations:
            body["durations"] = [[round(m / speed_ms, 1) for m in row] for row in metres]
        if "distance" in annotations:
            body["distances"] = [[round(m, 1) for m in row] for row in metres]
        body["sources"] = [_waypoint(points[i]) for i in sources]
        body["destinations"] = [_waypoint(points[i]) for i in destinations]
        return Response.json(200, body)


def _indices(values: list[str] | None, count: int) -> list[int]:
    if not values or values[0] == "all":
        return list(range(count))
    indices = [int(v) for v in values[0].split(";")]
    if any(not 0 <= i < count for i in indices):
        raise ValueError(values[0])
    return indices


def _waypoint(point: tuple[float, float]) -> dict[str, Any]:
    # Every point is "on the road" in the fake: snapped distance 0, no street name.
    return {"hint": "", "distance": 0.0, "name": "", "location": [point[0], point[1]]}


@contextlib.contextmanager
def serve(port: int = 0, **options: Any) -> Iterator[OsrmFake]:
    """A running :class:`OsrmFake` (on any free port by default) for the ``with`` block."""
    with OsrmFake(**options).start(port) as fake:
        yield fake
