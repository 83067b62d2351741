"""A run's plan as a server-side SVG map (no tiles, no JavaScript, printable).

Each route is one colour: a line from its depot through its stops in order (dashed
while the truck drives to and from a facility) and back. Depots are black squares,
facilities brown triangles, stops dots in the route's colour; hovering any mark shows
its code, ETA and load (SVG <title>). Dropped stops are grey crosses. North is up;
longitude is scaled by cos(latitude) so distances look right.
"""

from __future__ import annotations

import math
from itertools import pairwise
from typing import Any

from django.utils.html import escape

from routing.models import OptimizationRun

# Colour-blind-safe first (Okabe-Ito), then more distinct hues for bigger fleets.
PALETTE = (
    "#0072B2", "#E69F00", "#009E73", "#CC79A7", "#D55E00", "#56B4E9", "#F0E442",
    "#8C564B", "#7F7F7F", "#BCBD22", "#17BECF", "#9467BD", "#1F77B4", "#2CA02C",
)  # fmt: skip
WIDTH = 900
HEIGHT = 640
MARGIN = 24


def colour(number: int) -> str:
    return PALETTE[(number - 1) % len(PALETTE)]


class _Projection:
    def __init__(self, points: list[tuple[float, float]]) -> None:
        lats = [p[0] for p in points] or [0.0]
        lons = [p[1] for p in points] or [0.0]
        self.k = math.cos(math.radians(sum(lats) / len(lats)))
        self.lat0, self.lat1 = min(lats), max(lats)
        self.lon0, self.lon1 = min(lons), max(lons)
        span_x = max((self.lon1 - self.lon0) * self.k, 1e-6)
        span_y = max(self.lat1 - self.lat0, 1e-6)
        self.scale = min((WIDTH - 2 * MARGIN) / span_x, (HEIGHT - 2 * MARGIN) / span_y)

    def __call__(self, lat: float, lon: float) -> tuple[float, float]:
        x = MARGIN + (lon - self.lon0) * self.k * self.scale
        y = HEIGHT - MARGIN - (lat - self.lat0) * self.scale
        return round(x, 1), round(y, 1)


def run_map(run: OptimizationRun) -> str:
    """The SVG document of a run's plan (an empty frame before it has one)."""
    snapshot: dict[str, Any] = run.input_snapshot or {}
    depots = {d["id"]: (d["lat"], d["lon"]) for d in snapshot.get("depots", [])}
    facilities = {f["id"]: (f["lat"], f["lon"]) for f in snapshot.get("facilities", [])}
    stops = {s["id"]: (s["lat"], s["lon"]) for s in snapshot.get("stops", [])}
    starts = {v["id"]: (v["start"], v["end"]) for v in snapshot.get("vehicles", [])}
    project = _Projection([*depots.values(), *facilities.values(), *stops.values()])
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'width="100%" style="max-width:{WIDTH}px;background:#fafafa;border:1px solid #ddd" '
        f'role="img" aria-label="Map of run {run.pk}">'
    ]
    routes = list(run.routes.prefetch_related("visits"))
    for route in routes:
        c = colour(route.number)
        start, end = starts.get(route.vehicle_code, (None, None))
        visits = list(route.visits.all())
        # (point, is a facility) from the start depot through the visits to the end depot.
        path = [(depots[start], False)] if start in depots else []
        path += [((v.lat, v.lon), v.kind != "stop") for v in visits]
        if end in depots:
            path.append((depots[end], False))
        solid: list[str] = []
        dashed: list[str] = []
        for (a, a_facility), (b, b_facility) in pairwise(path):
            (ax, ay), (bx, by) = project(*a), project(*b)
            (dashed if a_facility or b_facility else solid).append(f"M{ax},{ay}L{bx},{by}")
        parts.append(
            f'<g class="route" fill="none" stroke="{c}" stroke-width="2" stroke-opacity="0.8">'
            f"<title>route {route.number}: {escape(route.vehicle_code)}</title>"
            + (f'<path d="{"".join(solid)}"/>' if solid else "")
            + (f'<path d="{"".join(dashed)}" stroke-dasharray="6 4"/>' if dashed else "")
            + "</g>"
        )
        for v in visits:
            if v.kind != "stop":
                continue
            x, y = project(v.lat, v.lon)
            load = ", ".join(f"{k} {val}" for k, val in v.load_on_arrival.items())
            parts.append(
                f'<circle cx="{x}" cy="{y}" r="4" fill="{c}" stroke="#fff" stroke-width="1">'
                f"<title>{escape(v.code)} - route {route.number}, stop {v.order}, "
                f"ETA {v.eta:%H:%M}, load on arrival {escape(load)}</title></circle>"
            )
    for code in (d.get("stop") for d in run.dropped or []):
        if code in stops:
            x, y = project(*stops[code])
            parts.append(
                f'<path d="M{x - 4},{y - 4}L{x + 4},{y + 4}M{x - 4},{y + 4}L{x + 4},{y - 4}" '
                f'stroke="#888" stroke-width="2"><title>{escape(code)} - not planned</title></path>'
            )
    for code, (lat, lon) in facilities.items():
        x, y = project(lat, lon)
        parts.append(
            f'<path d="M{x},{y - 9}L{x + 8},{y + 6}L{x - 8},{y + 6}Z" fill="#8B4513" '
            f'stroke="#fff"><title>{escape(code)} - facility (unload)</title></path>'
        )
    for code, (lat, lon) in depots.items():
        x, y = project(lat, lon)
        parts.append(
            f'<rect x="{x - 7}" y="{y - 7}" width="14" height="14" fill="#111" stroke="#fff">'
            f"<title>{escape(code)} - depot</title></rect>"
        )
    for i, route in enumerate(routes):
        y = MARGIN + 16 * i
        parts.append(
            f'<rect x="{WIDTH - 170}" y="{y - 9}" width="12" height="12" '
            f'fill="{colour(route.number)}"/>'
            f'<text x="{WIDTH - 152}" y="{y + 1}" font-size="12" font-family="sans-serif">'
            f"{route.number}. {escape(route.vehicle_code)} ({route.stops} stops)</text>"
        )
    parts.append("</svg>")
    return "".join(parts)
