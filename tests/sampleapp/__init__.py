"""A domain app as a newcomer writes one: a job, an endpoint and a schedule, picked up by
the platform with no edit under queueing/ (tests/platform/test_app_surfaces.py)."""
