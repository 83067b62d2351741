"""Routes of the queue API, mounted at /api/v1/queue/ (config/urls.py), with every
installed app's ``api.py`` urlpatterns mounted among them (docs/apps.md)."""

from __future__ import annotations

from django.core.exceptions import ImproperlyConfigured
from django.urls import URLPattern, URLResolver, path

from queueing.api import alerts, views
from queueing.api import operations as ops
from queueing.api.providers import ProvidersView
from queueing.api.tasks_view import TasksView
from queueing.discovery import app_modules

app_name = "queue-api"


def app_urlpatterns() -> list[URLPattern | URLResolver]:
    """The ``urlpatterns`` of each installed app's ``api`` module, in app order."""
    found: list[URLPattern | URLResolver] = []
    for config, module in app_modules("api"):
        if config.name == "queueing":
            continue
        patterns = getattr(module, "urlpatterns", None)
        if not isinstance(patterns, list | tuple):
            raise ImproperlyConfigured(f"{config.name}/api.py must define a urlpatterns list")
        found.extend(patterns)
    return found


urlpatterns = [
    path("health", views.HealthView.as_view(), name="health"),
    path("status", views.StatusView.as_view(), name="status"),
    path("stats", views.StatsView.as_view(), name="stats"),
    path("stats/<str:queue>", views.QueueStatsView.as_view(), name="queue-stats"),
    path("metrics", views.MetricsView.as_view(), name="metrics"),
    path("providers", ProvidersView.as_view(), name="providers"),
    path("tasks", TasksView.as_view(), name="tasks"),
    path("jobs", views.JobsView.as_view(), name="jobs"),
    path("jobs/recurring", ops.RecurringListView.as_view(), name="recurring"),
    path(
        "jobs/recurring/<int:recurring_id>",
        ops.RecurringDetailView.as_view(),
        name="recurring-detail",
    ),
    path("jobs/<uuid:job_id>", views.JobDetailView.as_view(), name="job-detail"),
    path("jobs/<uuid:job_id>/cancel", views.JobCancelView.as_view(), name="job-cancel"),
    path("jobs/<uuid:job_id>/retry", views.JobRetryView.as_view(), name="job-retry"),
    path("alerts", alerts.AlertListView.as_view(), name="alerts"),
    path(
        "alerts/<int:alert_id>/acknowledge",
        alerts.AlertAcknowledgeView.as_view(),
        name="alert-acknowledge",
    ),
    path("alerts/<int:alert_id>/snooze", alerts.AlertSnoozeView.as_view(), name="alert-snooze"),
    path(
        "alerts/<int:alert_id>/unacknowledge",
        alerts.AlertUnacknowledgeView.as_view(),
        name="alert-unacknowledge",
    ),
    path("dead-letters", ops.DeadLetterListView.as_view(), name="dead-letters"),
    path("dead-letters/replay", ops.DeadLetterBulkReplayView.as_view(), name="dead-letters-replay"),
    path(
        "dead-letters/<int:letter_id>/review",
        ops.DeadLetterReviewView.as_view(),
        name="dead-letter-review",
    ),
    path(
        "dead-letters/<int:letter_id>/replay",
        ops.DeadLetterReplayView.as_view(),
        name="dead-letter-replay",
    ),
    # Each app's own endpoints (<app>/api.py), before the queue catch-alls below.
    *app_urlpatterns(),
    # Queue operations last: "{queue}/..." must not shadow the fixed paths above.
    path("<str:queue>/pause", views.QueuePauseView.as_view(), name="queue-pause"),
    path("<str:queue>/resume", views.QueueResumeView.as_view(), name="queue-resume"),
    path("<str:queue>/clean", views.QueueCleanView.as_view(), name="queue-clean"),
    path("<str:queue>/jobs", views.QueueJobsView.as_view(), name="queue-jobs"),
]
