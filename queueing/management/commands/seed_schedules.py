"""Create the apps' declared recurring jobs in django-celery-beat, if missing."""

from __future__ import annotations

from django.core.management.base import BaseCommand

from queueing.control.schedules import seed_schedules


class Command(BaseCommand):
    help = "Create missing declared schedules (never overwrites an operator's edits)."

    def handle(self, *args, **options):
        created = seed_schedules()
        self.stdout.write(f"created: {', '.join(created)}" if created else "all present")
