"""Django settings for the django-q2 peer: PostgreSQL from BENCH_DATABASE_URL, persistent
connections, the ORM broker, 2 workers, results saved (django-q2's default save_limit)."""

from __future__ import annotations

import os
from urllib.parse import unquote, urlsplit

_url = urlsplit(os.environ["BENCH_DATABASE_URL"])

SECRET_KEY = "bench-only"  # noqa: S105
DEBUG = False
USE_TZ = True
INSTALLED_APPS = ["django_q"]
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": _url.path.lstrip("/"),
        "USER": unquote(_url.username or ""),
        "PASSWORD": unquote(_url.password or ""),
        "HOST": _url.hostname or "",
        "PORT": str(_url.port or ""),
        # Persistent connections, as a production deployment would configure them.
        "CONN_MAX_AGE": None,
    }
}
Q_CLUSTER = {
    "name": "bench",
    "workers": 2,
    "orm": "default",
    "sync": False,
    "timeout": 60,
    "retry": 120,
}
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": "WARNING"},
}
