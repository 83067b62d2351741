"""Routing's housekeeping (docs/routing.md "Housekeeping"): expired OSRM matrices are
deleted and old runs' input snapshots are slimmed, in batches, by the nightly
`routing.prune` job (routing/schedules.py).

A run keeps its routes, visits, figures and input hash for good; after
`SNAPSHOT_RETENTION_DAYS` its snapshot keeps only what the map and the run sheets read
besides the visits (depots, facilities, vehicles): the stops and today's rounds, most of
its size, go.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from django.utils import timezone

from routing.models import MatrixCache, OptimizationRun
from routing.osrm import MATRIX_CACHE_SECONDS

logger = logging.getLogger(__name__)

# A quarter: long enough to compare a season's plans or answer a customer's question
# about a pickup with the full input at hand.
SNAPSHOT_RETENTION_DAYS = 90
# Rows per statement: a 300-stop snapshot is ~60 KB, so 100 of them are a few MB.
PRUNE_BATCH = 100
# What a slimmed snapshot keeps (svg.run_map and the run sheet read these).
KEPT = ("dimensions", "depots", "facilities", "vehicles")


def prune(now: dt.datetime | None = None) -> dict[str, Any]:
    """Delete matrices past their cache age; slim snapshots of runs older than the
    retention. Counts of both. Safe to interrupt: the next run continues."""
    now = now or timezone.now()
    matrix_cutoff = now - dt.timedelta(seconds=MATRIX_CACHE_SECONDS)
    matrices = 0
    while ids := list(
        MatrixCache.objects.filter(created_at__lt=matrix_cutoff).values_list("id", flat=True)[
            :PRUNE_BATCH
        ]
    ):
        matrices += MatrixCache.objects.filter(id__in=ids).delete()[0]
    run_cutoff = now - dt.timedelta(days=SNAPSHOT_RETENTION_DAYS)
    slimmed = 0
    old = OptimizationRun.objects.filter(created_at__lt=run_cutoff, input_snapshot__has_key="stops")
    while batch := list(old.values_list("id", "input_snapshot")[:PRUNE_BATCH]):
        for run_id, snapshot in batch:
            kept = {key: snapshot.get(key) for key in KEPT if key in snapshot}
            OptimizationRun.objects.filter(id=run_id).update(
                input_snapshot={**kept, "pruned": now.date().isoformat()}
            )
        slimmed += len(batch)
    counts = {"matrices_deleted": matrices, "snapshots_slimmed": slimmed}
    logger.info("routing prune: %s", counts)
    return counts
