"""The platform's own recurring jobs (seeded like any app's: queueing/control/schedules.py).

Minute 17: away from the top of the hour, when other cron-driven systems pile up.
"""

SCHEDULES = {
    "taskyard: prune finished jobs": {"task": "queueing.prune_jobs", "cron": "17 * * * *"},
    "taskyard: check alerts": {"task": "queueing.check_alerts", "cron": "* * * * *"},
    "taskyard: check providers": {"task": "queueing.check_providers", "cron": "* * * * *"},
    # History (docs/monitoring.md): every 5 minutes the bucket that just ended; the prune
    # and the report on the business's clock (BUSINESS_TIME_ZONE).
    "taskyard: snapshot queue stats": {
        "task": "queueing.snapshot_queue_stats",
        "cron": "*/5 * * * *",
        "priority": 9,
    },
    "taskyard: prune queue stats": {
        "task": "queueing.prune_queue_stats",
        "cron": "0 2 * * *",
        "timezone": "business",
        "priority": 9,
    },
    "taskyard: daily report": {
        "task": "queueing.daily_report",
        "cron": "0 0 * * *",
        "timezone": "business",
        "priority": 9,
    },
}
