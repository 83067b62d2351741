"""Settings of the test suite: the real settings, a test-only app, and short timings.

Worker and relay processes started by tests/harness.py use this module too, so they
see the same tables and the same timings as the test process.
"""

import os

# Short leases and a fast relay, so lost-worker recovery happens within a test's
# deadline. Set before the real settings read them; the environment still wins.
os.environ.setdefault("JOB_LEASE_SECONDS", "3")
os.environ.setdefault("RELAY_INTERVAL_SECONDS", "0.2")
os.environ.setdefault("RELAY_REPUBLISH_AFTER_SECONDS", "5")

from config.settings import *  # noqa: F403
from config.settings import (
    CELERY_BROKER_TRANSPORT_OPTIONS,
    TASKYARD_PROVIDERS,
    TASKYARD_QUEUES,
)

INSTALLED_APPS = [*INSTALLED_APPS, "tests.sideeffects", "tests.sampleapp"]  # noqa: F405

# Tests create many users; the production hasher is slow on purpose.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

# Queues only the workers a test starts for itself consume (never the session worker),
# for tests that kill workers or need a queue with no consumer.
TASKYARD_QUEUES = {
    **TASKYARD_QUEUES,
    "isolated": {"concurrency": 2},
    # A globally rate-limited queue, for the rate-limit tests.
    "limited": {"concurrency": 2, "rate_limit": "10/s"},
    # The sample app's own queue (tests/sampleapp): tasks it defines without naming a
    # queue go here, by the app-label convention.
    "sampleapp": {"concurrency": 1, "retry": {"max_attempts": 4}},
}
# Readiness and the no-worker alert expect workers only where the session worker runs.
HEALTH_WORKER_QUEUES = [name for name in TASKYARD_QUEUES if name not in ("isolated", "limited")]
CELERY_TASK_QUEUES = [Queue(name, routing_key=name) for name in TASKYARD_QUEUES]  # noqa: F405

# kombu scans for unacknowledged messages past the visibility timeout every 100 s by
# default; every second here, so a redelivery test does not wait minutes.
CELERY_BROKER_TRANSPORT_OPTIONS = {
    **CELERY_BROKER_TRANSPORT_OPTIONS,
    "unacked_restore_interval": 1,
    "unacked_restore_throttle": 1,
}

# Test-only tasks, registered in the test process and in every worker the tests start.
CELERY_IMPORTS = ["tests.worker_tasks"]

# A provider the guard tests point at a local Stripe fake they start (FAKEPAY_URL is set
# in the environment of the workers they start): quick to open, quick to probe.
TASKYARD_PROVIDERS = {
    **TASKYARD_PROVIDERS,
    "fakepay": {
        "base_url": os.environ.get("FAKEPAY_URL", "http://127.0.0.1:9"),
        "timeout": 2,
        "rate_limit": "20/s",
        "breaker": {"failures": 3, "open_seconds": 2, "min_calls": 100},
    },
}
