"""Routing's recurring job, seeded after migrate (editable in the admin afterwards).

Tomorrow's routes are planned the evening before, once the day's changes (new
customers, cancelled pickups) are in: one optimisation per depot with pickups. A
dispatcher who changes a stop later asks again through the API; an unchanged depot is
served from the result cache.
"""

SCHEDULES = {
    "routing: plan tomorrow's routes": {
        "task": "routing.plan_tomorrow",
        "cron": "0 20 * * *",  # 20:00, after the day's rounds and office changes
        "kwargs": {"time_limit": 20.0},
        "description": "Plan tomorrow's collection routes, one optimisation per depot.",
    },
}
