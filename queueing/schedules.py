"""The platform's own recurring jobs (seeded like any app's: queueing/control/schedules.py).

Minute 17: away from the top of the hour, when other cron-driven systems pile up.
"""

SCHEDULES = {
    "taskyard: prune finished jobs": {"task": "queueing.prune_jobs", "cron": "17 * * * *"},
    "taskyard: check alerts": {"task": "queueing.check_alerts", "cron": "* * * * *"},
    "taskyard: check providers": {"task": "queueing.check_providers", "cron": "* * * * *"},
}
