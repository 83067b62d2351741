"""The sample app's recurring job, seeded after migrate by the platform."""

SCHEDULES = {
    "sampleapp: nightly collection plan": {
        "task": "sampleapp.plan_collection",
        "cron": "30 2 * * *",
        "kwargs": {"route_id": 1, "note": "nightly"},
    },
}
