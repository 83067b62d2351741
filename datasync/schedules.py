"""The data sync's recurring jobs, seeded after migrate (editable in the admin afterwards).

Every enabled source with ``scheduled`` on is synced incrementally through the day and
fully (with deletion detection) once a night. A source that needs another rhythm is
taken out of these (``scheduled`` off) and given its own periodic task in the admin
with ``{"source": "<name>", "mode": "..."}``.
"""

SCHEDULES = {
    "datasync: incremental syncs": {
        "task": "datasync.sync_sources",
        # Every 15 minutes in working hours: dispatchers see Airtable edits within a
        # quarter of an hour, at 4 Airtable requests per source when nothing changed.
        "cron": "*/15 6-20 * * *",
        "timezone": "business",
        "kwargs": {"mode": "incremental"},
        "description": "Records changed at each source since its watermark",
    },
    "datasync: nightly full syncs": {
        "task": "datasync.sync_sources",
        # 03:30: after billing's 02:00 run, before the 06:00 route planning.
        "cron": "30 3 * * *",
        "timezone": "business",
        "kwargs": {"mode": "full"},
        "description": "Everything at each source, and the records deleted there",
    },
}
