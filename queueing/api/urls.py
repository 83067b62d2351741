"""Routes of the queue API, mounted at /api/v1/queue/ (config/urls.py)."""

from django.urls import path

from queueing.api import operations as ops
from queueing.api import views

app_name = "queue-api"

urlpatterns = [
    path("health", views.HealthView.as_view(), name="health"),
    path("status", views.StatusView.as_view(), name="status"),
    path("stats", views.StatsView.as_view(), name="stats"),
    path("stats/<str:queue>", views.QueueStatsView.as_view(), name="queue-stats"),
    path("metrics", views.MetricsView.as_view(), name="metrics"),
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
    path(
        "route-optimization",
        ops.domain_shortcut("routing", "route optimisation", "routing").as_view(),
        name="route-optimization",
    ),
    path(
        "billing",
        ops.domain_shortcut("billing", "billing runs", "billing").as_view(),
        name="billing",
    ),
    path(
        "notifications",
        ops.domain_shortcut("notifications", "notifications", "notifications").as_view(),
        name="notifications",
    ),
    path(
        "data-sync",
        ops.domain_shortcut("datasync", "data sync runs", "datasync").as_view(),
        name="data-sync",
    ),
    path(
        "maintenance",
        ops.domain_shortcut("maintenance", "maintenance jobs", "maintenance").as_view(),
        name="maintenance",
    ),
    # Queue operations last: "{queue}/..." must not shadow the fixed paths above.
    path("<str:queue>/pause", views.QueuePauseView.as_view(), name="queue-pause"),
    path("<str:queue>/resume", views.QueueResumeView.as_view(), name="queue-resume"),
    path("<str:queue>/clean", views.QueueCleanView.as_view(), name="queue-clean"),
    path("<str:queue>/jobs", views.QueueJobsView.as_view(), name="queue-jobs"),
]
