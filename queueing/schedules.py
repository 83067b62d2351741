"""The platform's own recurring jobs, seeded into django-celery-beat's tables.

Seeding only creates what is missing (by name): an operator's edits in the admin (time,
enabled flag) are never overwritten. Run by a data migration and by
``manage.py seed_schedules``; later issues add their roll-ups and alert checks here.
"""

from __future__ import annotations

# name → (task, crontab fields, queue). Minute 17: away from the top of the hour, when
# other cron-driven systems pile up.
PLATFORM_SCHEDULES = {
    "taskyard: prune finished jobs": (
        "queueing.prune_jobs",
        {"minute": "17", "hour": "*"},
        "maintenance",
    ),
    "taskyard: check alerts": (
        "queueing.check_alerts",
        {"minute": "*", "hour": "*"},
        "maintenance",
    ),
}


def seed_schedules(periodic_task_model=None, crontab_model=None) -> list[str]:
    """Create the missing platform schedules; return the names created."""
    if periodic_task_model is None:
        from django_celery_beat.models import CrontabSchedule, PeriodicTask

        periodic_task_model, crontab_model = PeriodicTask, CrontabSchedule
    created = []
    for name, (task, fields, queue) in PLATFORM_SCHEDULES.items():
        if periodic_task_model.objects.filter(name=name).exists():
            continue
        crontab, _ = crontab_model.objects.get_or_create(
            minute=fields["minute"],
            hour=fields["hour"],
            day_of_week="*",
            day_of_month="*",
            month_of_year="*",
            timezone="UTC",
        )
        periodic_task_model.objects.create(name=name, task=task, crontab=crontab, queue=queue)
        created.append(name)
    return created
