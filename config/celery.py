"""The Celery application of Taskyard.

Configuration comes from Django settings (the ``CELERY_`` names in config/settings.py);
tasks are discovered in each installed app's ``tasks.py``.
"""

from __future__ import annotations

import os
import sys

from celery import Celery
from django.core.exceptions import ImproperlyConfigured

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("taskyard", task_cls="queueing.worker.task:TaskyardTask")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


def _check_settings() -> None:
    """Load settings now, so `celery worker` with a bad variable stops with one clear
    line instead of a traceback from deep inside worker start-up."""
    from django.conf import settings

    try:
        settings.INSTALLED_APPS  # noqa: B018 - forces the settings module to load
    except ImproperlyConfigured as exc:
        sys.exit(f"taskyard: configuration error: {exc}")


_check_settings()


@app.on_after_configure.connect
def _setup_django(sender: Celery, **_: object) -> None:
    """Set Django up for Celery commands that do not (``celery -A config call``,
    ``inspect``...): sending goes through the ledger and the results table, which need
    the models. Web and worker processes are set up (or being set up) already."""
    from django.apps import apps

    if not apps.ready and not apps.loading:
        import django

        django.setup()
