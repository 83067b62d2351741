"""Routing's recurring jobs, seeded after migrate (editable in the admin afterwards).

Tomorrow's routes are planned the evening before, once the day's changes (new
customers, cancelled pickups) are in: one optimisation per depot with pickups. A
dispatcher who changes a stop later asks again through the API; an unchanged depot is
served from the result cache.
"""

SCHEDULES = {
    "routing: plan tomorrow's routes": {
        "task": "routing.plan_tomorrow",
        "cron": "0 20 * * *",  # 20:00, after the day's rounds and office changes
        "timezone": "business",
        "kwargs": {"time_limit": 20.0},
        "description": "Plan tomorrow's collection routes, one optimisation per depot.",
    },
    "routing: prune matrices and old snapshots": {
        "task": "routing.prune",
        # 02:45, a quiet hour between billing's 02:00 run and the 03:30 full syncs.
        "cron": "45 2 * * *",
        "timezone": "business",
        "priority": 9,
        "description": "Delete expired OSRM matrices; slim input snapshots of runs past 90 days.",
    },
}
