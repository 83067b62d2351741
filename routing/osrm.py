"""Road-network travel matrices from an OSRM `/table` service, through the provider guard.

OSRM answers at most `max_table_size` coordinates per request (100 by default), so a
bigger matrix is fetched in blocks of sources x destinations. Each request goes through
`provider_call("osrm")` (breaker, adaptive rate, cost; a 429 or an open breaker defers
the job without spending an attempt). Whole matrices are cached in the database keyed
by the provider and the coordinates (rounded to ~1 m), for `MATRIX_CACHE_SECONDS`.
OSRM has no traffic: `routing.snapshot` applies the time-of-day factor to its durations.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Sequence

import httpx
from django.conf import settings
from django.utils import timezone

from queueing import PermanentError, provider_call
from routing.models import MatrixCache

PROVIDER = "osrm"
# Half of osrm-routed's default --max-table-size (100): sources + destinations <= 100.
BLOCK = 50
# 5 decimals of a degree is ~1 m: points that close are the same place for routing.
COORDINATE_DECIMALS = 5
# Road networks change slowly; a week-old matrix is still right for collection rounds.
MATRIX_CACHE_SECONDS = 7 * 24 * 3600
PROFILE = "driving"

Matrix = tuple[list[list[int]], list[list[int]]]


def cache_key(points: Sequence[tuple[float, float]]) -> str:
    rounded = [
        [round(lat, COORDINATE_DECIMALS), round(lon, COORDINATE_DECIMALS)] for lat, lon in points
    ]
    return hashlib.sha256(json.dumps([PROVIDER, PROFILE, rounded]).encode()).hexdigest()


def osrm_matrix(points: Sequence[tuple[float, float]]) -> Matrix:
    """(distance m, duration s) between (lat, lon) points, from the cache or OSRM."""
    key = cache_key(points)
    fresh = timezone.now() - dt.timedelta(seconds=MATRIX_CACHE_SECONDS)
    cached = MatrixCache.objects.filter(key=key, created_at__gte=fresh).first()
    if cached is not None:
        return cached.distances, cached.durations
    distances, durations = _fetch(points)
    MatrixCache.objects.update_or_create(
        key=key,
        defaults={
            "provider": PROVIDER,
            "size": len(points),
            "distances": distances,
            "durations": durations,
            "created_at": timezone.now(),
        },
    )
    return distances, durations


def _fetch(points: Sequence[tuple[float, float]]) -> Matrix:
    spec = settings.TASKYARD_PROVIDERS[PROVIDER]
    n = len(points)
    distances = [[0] * n for _ in range(n)]
    durations = [[0] * n for _ in range(n)]
    blocks = [list(range(i, min(i + BLOCK, n))) for i in range(0, n, BLOCK)]
    with httpx.Client(base_url=spec["base_url"], timeout=spec.get("timeout", 30)) as client:
        for sources in blocks:
            for targets in blocks:
                coords = [points[i] for i in sources] + [points[j] for j in targets]
                path = ";".join(f"{lon:.6f},{lat:.6f}" for lat, lon in coords)
                params = {
                    "annotations": "duration,distance",
                    "sources": ";".join(str(k) for k in range(len(sources))),
                    "destinations": ";".join(str(len(sources) + k) for k in range(len(targets))),
                }
                with provider_call(PROVIDER):
                    response = client.get(f"/table/v1/{PROFILE}/{path}", params=params)
                    response.raise_for_status()
                body = response.json()
                if body.get("code") != "Ok":
                    raise PermanentError(f"OSRM table: {body.get('code')}: {body.get('message')}")
                for a, i in enumerate(sources):
                    for b, j in enumerate(targets):
                        metres = body["distances"][a][b]
                        seconds = body["durations"][a][b]
                        if metres is None or seconds is None:
                            raise PermanentError(
                                f"OSRM found no road from point {i} {points[i]} to {j} {points[j]}"
                            )
                        distances[i][j] = round(metres)
                        durations[i][j] = round(seconds)
    return distances, durations
