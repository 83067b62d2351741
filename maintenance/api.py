"""Maintenance's endpoints under /api/v1/queue/ (mounted by the platform), admins only
(the jobs declare roles=(); docs/api.md, docs/operations.md "Run a maintenance job now"):

POST maintenance/backup          back up now: {"verify": true}; 202 with the job (200 with
                                 the running one when a backup is already under way)
POST maintenance/upkeep          database upkeep now: {}
POST maintenance/verify-backup   verify a backup again: {"backup_id": 12}

The platform's own maintenance jobs go through POST jobs: {"task":
"queueing.daily_report", "args": {"day": "2026-11-30"}} rebuilds a day's report,
{"task": "queueing.snapshot_queue_stats"} writes the history now, {"task":
"queueing.prune_jobs"} prunes.
"""

from __future__ import annotations

from django.urls import path

from queueing import JobEndpoint

urlpatterns = [
    path(
        "maintenance/backup",
        JobEndpoint.as_view(task="maintenance.backup_database"),
        name="maintenance-backup",
    ),
    path(
        "maintenance/upkeep",
        JobEndpoint.as_view(task="maintenance.database_upkeep"),
        name="maintenance-upkeep",
    ),
    path(
        "maintenance/verify-backup",
        JobEndpoint.as_view(task="maintenance.verify_backup"),
        name="maintenance-verify-backup",
    ),
]
