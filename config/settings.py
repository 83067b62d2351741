"""Taskyard settings: one module, read from the environment.

Every variable is documented in ``.env.example``; a malformed value stops the process at
start with a message naming the variable (see ``config/env.py``). Development defaults are
safe and local (SQLite under ``var/``, an embedded Redis on a unix socket); production
secrets have no defaults.
"""

from __future__ import annotations

import datetime as dt
import secrets
import sys
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured
from kombu import Queue

from config.env import (
    broker_url_from_redis_url,
    env_bool,
    env_choice,
    env_float,
    env_int,
    env_list,
    env_str,
    load_env_file,
    parse_database_url,
    parse_redis_url,
    sqlite_database,
)
from devstack import embedded_redis

BASE_DIR = Path(__file__).resolve().parent.parent
# Runtime state of a development install: SQLite file, embedded Redis data, logs.
VAR_DIR = Path(env_str("VAR_DIR", str(BASE_DIR / "var"))).resolve()
# Written by the first `make run` (devstack): DEBUG=1 and a generated SECRET_KEY, so
# manage.py and celery commands work from a plain shell on a development machine. Only
# fills variables that are unset; a production host has no such file (and must not).
LOCAL_ENV_FILE = VAR_DIR / "local.env"
LOCAL_ENV_LOADED = load_env_file(LOCAL_ENV_FILE)

# --- Core -----------------------------------------------------------------------------

DEBUG = env_bool("DEBUG", default=False)
# manage.py commands that only read models and migration files: they sign nothing, so they
# run without SECRET_KEY (a migrations check in a build step or a hook, say) on a random
# key that dies with the process. Every other entry point needs the real key.
KEYLESS_COMMANDS = ("makemigrations", "showmigrations", "sqlmigrate")
_keyless = (
    len(sys.argv) > 1 and Path(sys.argv[0]).name == "manage.py" and sys.argv[1] in KEYLESS_COMMANDS
)
# Read by system checks of production-only settings (notifications' PUBLIC_URL), which a
# migrations check does not need either.
KEYLESS_COMMAND = _keyless
SECRET_KEY = env_str("SECRET_KEY")
_secret_key_missing = False
if not SECRET_KEY:
    if _keyless:
        SECRET_KEY = secrets.token_urlsafe(50)
    elif not DEBUG:
        # Raised at the end of this module, so a malformed variable read later (say
        # DATABASE_URL) is still the error reported first.
        _secret_key_missing = True
    else:
        SECRET_KEY = "django-insecure-local-development-only"  # noqa: S105 - DEBUG only

ALLOWED_HOSTS = env_list(
    "ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]", "testserver"] if DEBUG else []
)
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])
LOG_LEVEL = env_choice("LOG_LEVEL", "INFO", ("DEBUG", "INFO", "WARNING", "ERROR"))

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_celery_beat",
    "django_celery_results",
    "rest_framework",
    "rest_framework_simplejwt.token_blacklist",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "queueing",
    "billing",
    "notifications",
    "routing",
    "datasync",
    "maintenance",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Before anything reads the body: an oversized API request is a JSON 413; unknown
    # query parameters and NUL characters are 400s.
    "queueing.api.errors.ApiRequestGuardMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"
ASGI_APPLICATION = "config.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "queueing.context_processors.links",
            ],
        },
    },
]

# --- Database -------------------------------------------------------------------------

_database_url = env_str("DATABASE_URL")
DATABASES = {
    "default": (
        parse_database_url(_database_url, base_dir=BASE_DIR)
        if _database_url
        else sqlite_database(VAR_DIR / "taskyard.sqlite3")
    )
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = env_str("TIME_ZONE", "UTC")
# The business's own clock: billing periods, the daily report's midnight, quiet hours'
# defaults and the demo company's day. Storage and the ledger stay in UTC (TIME_ZONE).
BUSINESS_TIME_ZONE = env_str("BUSINESS_TIME_ZONE", "Europe/Amsterdam")
# A first `make run` on an empty database seeds the demo company (`manage.py seed_demo`,
# docs/maintenance.md); 0 starts empty instead.
TASKYARD_DEMO_ON_FIRST_START = env_bool("TASKYARD_DEMO_ON_FIRST_START", True)
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"

# --- Redis (broker, cache, locks) -----------------------------------------------------

# Unset: the embedded Redis that `make run` / `make test` start (devstack/embedded_redis.py).
EMBEDDED_REDIS_DIR = embedded_redis.data_dir_for(VAR_DIR)
_redis_url = env_str("REDIS_URL")
REDIS_URL = (
    parse_redis_url(_redis_url) if _redis_url else embedded_redis.url_for(EMBEDDED_REDIS_DIR)
)
REDIS_IS_EMBEDDED = not _redis_url

CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": "taskyard",
        "TIMEOUT": 300,
    }
}

# --- Celery ---------------------------------------------------------------------------
# https://docs.celeryq.dev/en/stable/userguide/configuration.html

CELERY_BROKER_URL = broker_url_from_redis_url(REDIS_URL)
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True

# JSON only: pickle lets anyone who can write to the broker run code on the workers.
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_RESULT_ACCEPT_CONTENT = ["json"]

# Results live in the database (django-celery-results), with task name, args, worker
# and queue (result_extended), so admin and AsyncResult can show them.
# django-celery-results' backend, made to reconnect (queueing/results.py): a write that
# meets a connection PostgreSQL dropped is retried on a new one, at most 3 times.
CELERY_RESULT_BACKEND = "queueing.results:ReconnectingDatabaseBackend"
CELERY_RESULT_BACKEND_ALWAYS_RETRY = True
CELERY_RESULT_BACKEND_MAX_RETRIES = 3
CELERY_RESULT_EXTENDED = True
# No STARTED rows: the ledger tracks running jobs, and a duplicate delivery that the
# claim drops must not overwrite a finished job's SUCCESS with STARTED.
CELERY_TASK_TRACK_STARTED = False
CELERY_RESULT_EXPIRES = None  # retention is ours (maintenance), not celery.backend_cleanup

# django-celery-beat's DatabaseScheduler (schedules in the database, editable in admin),
# wrapped so that only one beat schedules at a time (queueing/control/beat.py).
CELERY_BEAT_SCHEDULER = "queueing.control.beat:SingleBeatScheduler"
CELERY_TIMEZONE = TIME_ZONE

# Celery task events (task-received/started/succeeded..., one Redis publish each) only
# when something reads them: Flower switches them on in every worker it sees (its
# enable_events, every few seconds), so they cost nothing while no Flower is attached.
# The ledger, not the event stream, is the record of every job. CELERY_TASK_EVENTS=1
# turns them on from the start (another event consumer); docs/performance.md.
CELERY_WORKER_SEND_TASK_EVENTS = env_bool("CELERY_TASK_EVENTS", False)
# task-sent is the publisher's event and cannot be switched on remotely.
CELERY_TASK_SEND_SENT_EVENT = CELERY_WORKER_SEND_TASK_EVENTS

# --- Worker database connections ----------------------------------------------------
# Celery's Django fixup closes the worker's connections around every task unless
# CELERY_DB_REUSE_MAX is set: a new PostgreSQL backend per job (measured: most of the
# database's CPU per job, issue 18). Workers keep their connection instead, and close it
# the way Django closes a request's: when it errored and is no longer usable, or is
# older than WORKER_DB_CONN_MAX_AGE seconds (queueing/worker/connections.py). The fixup's
# own recycling is pushed out of reach.
WORKER_DB_CONN_MAX_AGE = env_int("WORKER_DB_CONN_MAX_AGE", 600, minimum=0)
CELERY_DB_REUSE_MAX = 2**31

# --- Reliable delivery ------------------------------------------------------------
# Measured on these machines with Celery 5.7 on Redis: without acks_late plus
# reject/retry-on-worker-lost, a SIGKILLed pool process loses the task it was running.

# Acknowledge after the task returns, not when it is received: a worker that dies
# mid-task leaves the message unacknowledged, and the broker redelivers it.
CELERY_TASK_ACKS_LATE = True
# acks_late alone still acks when the pool process is killed (WorkerLostError). Retry
# it the way Task.retry() would (new in 5.7), so max_retries bounds a task that kills
# its process every time instead of looping forever ...
CELERY_TASK_RETRY_ON_WORKER_LOST = True
# ... and if sending that retry fails (broker blip), requeue the original message.
CELERY_TASK_REJECT_ON_WORKER_LOST = True
# Prefetch one message per process: with acks_late a prefetched message is invisible to
# other workers until this one frees up, and lost with it if the worker dies.
CELERY_WORKER_PREFETCH_MULTIPLIER = 1

# Hard and soft time limits for every task (a task may lower them). The hard limit kills
# the pool process; the soft one raises SoftTimeLimitExceeded so the task can clean up.
CELERY_TASK_TIME_LIMIT = env_int("TASK_TIME_LIMIT", 30 * 60, minimum=1)
CELERY_TASK_SOFT_TIME_LIMIT = max(1, CELERY_TASK_TIME_LIMIT - 60)

# Redis redelivers an unacknowledged message after the visibility timeout. It must be
# longer than any task's hard time limit, or a long task still running is delivered to a
# second worker and runs twice (kombu#337). Also bounds countdown/ETA lengths, which is
# why later issues keep delayed jobs in the database instead of in ETAs.
BROKER_VISIBILITY_TIMEOUT = env_int(
    "BROKER_VISIBILITY_TIMEOUT", 2 * CELERY_TASK_TIME_LIMIT, minimum=1
)
if BROKER_VISIBILITY_TIMEOUT <= CELERY_TASK_TIME_LIMIT:
    raise ImproperlyConfigured(
        f"BROKER_VISIBILITY_TIMEOUT={BROKER_VISIBILITY_TIMEOUT} must be longer than "
        f"TASK_TIME_LIMIT={CELERY_TASK_TIME_LIMIT}, or long tasks are delivered twice"
    )
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": BROKER_VISIBILITY_TIMEOUT,
    # Fail a hung connection instead of blocking a publisher or consumer forever.
    "socket_timeout": 30,
    "socket_connect_timeout": 5,
    "socket_keepalive": True,
    # Ping idle pooled connections so a Redis restart is noticed before a publish.
    "health_check_interval": 25,
    # One Redis list per priority 0-9 (kombu's default merges them into 0, 3, 6, 9). The
    # worker pops the lowest number first, and with prefetch 1 it fetches one message at a
    # time, so a job of priority 0 enqueued behind 200 of priority 9 starts next.
    "priority_steps": list(range(10)),
}

# If the broker connection drops, cancel the tasks this worker is running: with
# acks_late their messages return to the queue and another worker takes them, while
# continuing here would let them run twice.
CELERY_WORKER_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS = True

# Soft shutdown: on a warm shutdown (deploy, Ctrl-C) running tasks get this many seconds
# to finish before the cold shutdown requeues them, and an idle worker also waits, so a
# message fetched just before the signal is requeued rather than dropped.
CELERY_WORKER_SOFT_SHUTDOWN_TIMEOUT = env_float("WORKER_SOFT_SHUTDOWN_TIMEOUT", 10.0, minimum=0)
CELERY_WORKER_ENABLE_SOFT_SHUTDOWN_ON_IDLE = True

# A pool process that leaks memory is replaced after this many KiB resident.
CELERY_WORKER_MAX_MEMORY_PER_CHILD = env_int("WORKER_MAX_MEMORY_PER_CHILD", 512 * 1024)

# --- billing ---
# Billing (billing/, docs/billing.md). Stripe's secret key: the real one in production
# (with STRIPE_WEBHOOK_SECRET); in DEBUG without it, a test key the local fake accepts.
BILLING_STRIPE_API_KEY = env_str(
    "STRIPE_API_KEY", "sk_test_taskyard_development_only" if DEBUG else ""
)
# Who tells customers about reminders and receipts: a class implementing
# billing.notify.Notifier. The notifications app's sender (templates, preferences, email
# and SMS, delivery log); billing.notify.EmailNotifier is the plain-email fallback.
BILLING_NOTIFIER = env_str("BILLING_NOTIFIER", "notifications.billing_sender.NotificationsNotifier")
# Payment reminders, in days from the due date (negative: before), sent at this hour of
# the business time zone. Paying cancels the ones not sent yet.
try:
    BILLING_REMINDER_OFFSETS_DAYS = [
        int(day) for day in env_list("BILLING_REMINDER_OFFSETS_DAYS", ["-3", "0", "7"])
    ]
except ValueError:
    raise ImproperlyConfigured(
        "BILLING_REMINDER_OFFSETS_DAYS: comma-separated whole days, e.g. -3,0,7"
    ) from None
BILLING_REMINDER_HOUR = env_int("BILLING_REMINDER_HOUR", 9, minimum=0)
if BILLING_REMINDER_HOUR > 23:
    raise ImproperlyConfigured("BILLING_REMINDER_HOUR: an hour of the day, 0-23")
# Render each invoice's PDF when it is issued (20 a minute: a 10,000-customer run takes
# over 8 hours of PDFs). Off: rendered when first downloaded.
BILLING_PDF_ON_ISSUE = env_bool("BILLING_PDF_ON_ISSUE", True)
BILLING_COMPANY_NAME = env_str("BILLING_COMPANY_NAME", "Taskyard Waste Collection")

# --- maintenance: backups and database upkeep (docs/operations.md) ---
# `manage.py backup` and the nightly job write here: one file per backup and, beside it,
# a JSON manifest with its row counts and the queue configuration of that moment.
BACKUP_DIR = Path(env_str("BACKUP_DIR", str(VAR_DIR / "backups"))).resolve()
# Rotation: the newest backup of each of the last N days, ISO weeks and months that have
# one (restic's keep-daily/-weekly/-monthly; a year of monthlies covers an annual audit),
# and every backup of the last `within_hours` (a manual one beside the night's).
BACKUP_KEEP = {
    "daily": env_int("BACKUP_KEEP_DAILY", 7, minimum=1),
    "weekly": env_int("BACKUP_KEEP_WEEKLY", 4, minimum=0),
    "monthly": env_int("BACKUP_KEEP_MONTHLY", 12, minimum=0),
    "within_hours": env_int("BACKUP_KEEP_WITHIN_HOURS", 24, minimum=0),
}
# PostgreSQL client programs (custom-format dump, restore); the server's major version
# or newer. The password reaches them through PGPASSWORD, never the command line.
BACKUP_PG_DUMP = env_str("BACKUP_PG_DUMP", "pg_dump")
BACKUP_PG_RESTORE = env_str("BACKUP_PG_RESTORE", "pg_restore")
# The nightly backup runs at 01:30 business time (maintenance/schedules.py); older than
# this, the newest verified backup is reported stale (maintenance.backups.health), and so
# is an install with the backup schedule enabled and no backup this long after it.
BACKUP_MAX_AGE_HOURS = env_int("BACKUP_MAX_AGE_HOURS", 26, minimum=1)

# --- history (queue statistics and the daily report, docs/monitoring.md) ---
# 5-minute queue statistics (QueueStat) are deleted after this many days (daily, 02:00
# business time); the daily performance report goes to ALERT_EMAILS.
HISTORY_RETENTION_DAYS = env_int("HISTORY_RETENTION_DAYS", 30, minimum=1)
SITE_URL = env_str("SITE_URL", "http://127.0.0.1:8000")  # links in the report's email

# --- notifications ---------------------------------------------------------------------
# Email, SMS, Web Push and outbound webhooks (notifications/, docs/notifications.md).
# The queue its jobs go to (a deployment may give notifications a worker group of its own).
NOTIFICATIONS_QUEUE = env_str("NOTIFICATIONS_QUEUE", "notifications")
# Where providers and recipients reach us: Twilio status callbacks, unsubscribe links.
NOTIFICATIONS_PUBLIC_URL = env_str("PUBLIC_URL", "http://127.0.0.1:8000" if DEBUG else "")
# sendgrid (django-anymail; the local fake in DEBUG), smtp (EMAIL_HOST...) or console.
NOTIFICATIONS_EMAIL_BACKEND = env_choice(
    "NOTIFICATIONS_EMAIL_BACKEND", "sendgrid", ("sendgrid", "smtp", "console")
)
NOTIFICATIONS_FROM_EMAIL = env_str(
    "NOTIFICATIONS_FROM_EMAIL", env_str("DEFAULT_FROM_EMAIL", "taskyard@localhost")
)
SENDGRID_API_KEY = env_str("SENDGRID_API_KEY", "SG.taskyard-development" if DEBUG else "")
TWILIO_ACCOUNT_SID = env_str("TWILIO_ACCOUNT_SID", "AC" + "0" * 32 if DEBUG else "")
TWILIO_AUTH_TOKEN = env_str(
    "TWILIO_AUTH_TOKEN", "taskyard-development-twilio-token" if DEBUG else ""
)
TWILIO_FROM_NUMBER = env_str("TWILIO_FROM_NUMBER", "+15005550006" if DEBUG else "")
# Web Push: `manage.py generate_vapid_keys` prints both; in development it writes the
# private key to VAPID_KEY_FILE, read when VAPID_PRIVATE_KEY is unset.
VAPID_PRIVATE_KEY = env_str("VAPID_PRIVATE_KEY")
VAPID_PUBLIC_KEY = env_str("VAPID_PUBLIC_KEY")
VAPID_KEY_FILE = env_str("VAPID_KEY_FILE", str(VAR_DIR / "vapid-private.key"))
VAPID_SUBJECT = env_str("VAPID_SUBJECT", "mailto:operations@localhost")
# Reminders before a booking, in seconds (seed design: 24 h, 1 h, 15 min).
NOTIFICATIONS_REMINDER_OFFSETS = [
    int(value) for value in env_list("NOTIFICATIONS_REMINDER_OFFSETS", ["86400", "3600", "900"])
]
# Batch sends: recipients per chunk job (seed design: ≤ 100, about a second of work at
# the email limit) and per batch.
NOTIFICATIONS_BATCH_CHUNK = 100
NOTIFICATIONS_BATCH_MAX_RECIPIENTS = env_int(
    "NOTIFICATIONS_BATCH_MAX_RECIPIENTS", 10_000, minimum=1
)
# Outbound webhooks: an endpoint is disabled (with an alert) after this many failed
# deliveries in a row; each endpoint gets its own breaker with these settings.
NOTIFICATIONS_WEBHOOK_FAILURE_STREAK = env_int(
    "NOTIFICATIONS_WEBHOOK_FAILURE_STREAK", 10, minimum=1
)
NOTIFICATIONS_WEBHOOK_PROVIDER = {
    "timeout": 10,
    "rate_limit": "10/s",
    "breaker": {"failures": 5, "open_seconds": 60, "min_calls": 10},
}

# --- Queues ---------------------------------------------------------------------------
# One declaration per queue (queueing/specs.py validates it at start): production
# concurrency, pool, the worker group it shares a process with (`manage.py workers
# --print`), default priority 0-9, and retry defaults (queueing.ledger.retry.RetryPolicy
# fields; a job overrides them with job(retry={...})). Seed values.
TASKYARD_QUEUES: dict[str, dict] = {
    "default": {"concurrency": 4},
    # Route solving is CPU-bound: processes, not threads.
    "routing": {"concurrency": 2},
    # Invoices: a double charge is worse than a late one, so fewer, slower retries.
    "billing": {"concurrency": 1, "retry": {"max_attempts": 3, "base_delay": 30}},
    # I/O-bound calls to SendGrid/Twilio/webhooks: threads, sharing one worker process.
    "notifications": {
        "concurrency": 10,
        "pool": "threads",
        "group": "io",
        "retry": {"max_attempts": 8},
    },
    "external-api": {
        "concurrency": 8,
        "pool": "threads",
        "group": "io",
        "retry": {"max_attempts": 8},
    },
    "datasync": {"concurrency": 3},
    # Backups and upkeep, one at a time. A 20-minute backup holds the slot by design, so
    # what waits behind it (the hourly prune) is late without anything being wrong: no
    # latency or run-time alerts here (a maintenance job that never runs shows as
    # backup_stale, no_worker or backlog). The minute checks (alerts, history) run on
    # "default" so a backup never delays them.
    "maintenance": {
        "concurrency": 1,
        "retry": {"max_attempts": 3},
        "alerts": {
            "latency_warning_ms": None,
            "latency_critical_ms": None,
            "average_run_seconds": None,
        },
    },
}
# Priority of a job whose call, task and queue name none: 0 is the most urgent, 9 the
# least (as in Oban and kombu's Redis transport). The middle leaves room both ways.
TASKYARD_DEFAULT_PRIORITY = 5
# Named global rate limits a job opts into with `job(rate_limit="sendgrid")`
# (queueing/control/limits.py): at most N starts in any window, across every worker.
TASKYARD_RATE_LIMITS = {
    "sendgrid": "100/m",  # seed design: SendGrid plan limit
    "twilio": "1/s",  # seed design: one SMS per second per sender number
    "billing-pdf": "20/m",  # seed design: invoice and receipt PDFs, 20 a minute
    # notifications: one named limit per channel (seed design: email 100/min, the
    # other notifications 200/min).
    "notifications.email": env_str("NOTIFICATIONS_RATE_EMAIL", "100/m"),
    "notifications.sms": env_str("NOTIFICATIONS_RATE_SMS", "200/m"),
    "notifications.push": env_str("NOTIFICATIONS_RATE_PUSH", "200/m"),
    "notifications.webhook": env_str("NOTIFICATIONS_RATE_WEBHOOK", "200/m"),
}
# How long finished jobs (with their attempts, dead letters and results) are kept, in
# seconds, unless a queue declares its own "retention". Pruned by `manage.py prune_jobs`.
# Never less than 26 h (queueing.control.retention.MIN_RETENTION_SECONDS): the daily
# report reads the day's attempts after midnight.
TASKYARD_DEFAULT_RETENTION = {
    "succeeded": 26 * 3600,
    "dead": 7 * 24 * 3600,  # a week for someone to review, replay or discard
    "cancelled": 7 * 24 * 3600,
}
TASKYARD_DEFAULT_RETRY = {"max_attempts": 5, "base_delay": 2.0, "max_delay": 3600.0}
CELERY_TASK_DEFAULT_QUEUE = "default"
# Declared queues only: a typo in a route must fail, not create a queue nobody consumes.
CELERY_TASK_CREATE_MISSING_QUEUES = False
CELERY_TASK_QUEUES = [Queue(name, routing_key=name) for name in TASKYARD_QUEUES]
# A job goes to the queue its declaration names (queueing.job(queue=...)); a task without
# one goes to the queue named after its app, when declared, else to "default". Routes
# here override the app convention for tasks that declare no queue.
CELERY_TASK_ROUTES: dict[str, dict] = {}

# --- Job ledger (queueing/, docs/job-ledger.md) ----------------------------------------

# A claimed job is leased for this long; the worker renews the lease every third of it
# while the body runs. A killed worker's jobs are requeued once their lease expires, so
# this is also how long a lost job waits before it runs again.
JOB_LEASE_SECONDS = env_int("JOB_LEASE_SECONDS", 30, minimum=2)
# Arguments are stored in the ledger and in the message; a quarter of a MiB is far more
# than ids and small values need, and keeps a flood of jobs from filling Redis.
JOB_ARGS_MAX_BYTES = env_int("JOB_ARGS_MAX_BYTES", 256 * 1024, minimum=1024)
# The relay's tick: how late a due job or a failed publish can be picked up.
RELAY_INTERVAL_SECONDS = env_float("RELAY_INTERVAL_SECONDS", 1.0, minimum=0.05)
# Between ticks the relay wakes when the next scheduled job is due, but not more often
# than this: the most a due job waits for the relay (lateness), traded against wake-ups.
RELAY_DUE_GRANULARITY_SECONDS = env_float("RELAY_DUE_GRANULARITY_SECONDS", 0.05, minimum=0.01)
# Rows the relay handles per query; a backlog drains in several quick batches rather
# than in one long transaction.
RELAY_BATCH_SIZE = env_int("RELAY_BATCH_SIZE", 500, minimum=1)
# A queued job published this long ago whose message is neither waiting in the broker nor
# held by a live worker (queueing/inflight.py) was lost: publish it again. A duplicate is
# harmless, since the claim absorbs it. Also bounds how long a lost message goes unnoticed.
RELAY_REPUBLISH_AFTER_SECONDS = env_int("RELAY_REPUBLISH_AFTER_SECONDS", 5, minimum=1)
# Every Redis call of the relay gives up after this: a hung broker must not stop it from
# reaping expired leases and promoting due jobs in the database.
RELAY_BROKER_TIMEOUT_SECONDS = env_float("RELAY_BROKER_TIMEOUT_SECONDS", 1.0, minimum=0.05)
# Results bigger than this are summarised in Job.result (the full value is still in the
# results table).
JOB_RESULT_SUMMARY_MAX_BYTES = 16 * 1024

# --- Flower ---------------------------------------------------------------------------
# Flower always runs behind basic auth. In DEBUG a password is generated once into
# var/flower-password; otherwise FLOWER_PASSWORD is required to start Flower.
FLOWER_USER = env_str("FLOWER_USER", "admin")
FLOWER_PASSWORD = env_str("FLOWER_PASSWORD")
FLOWER_ADDRESS = env_str("FLOWER_ADDRESS", "127.0.0.1")
FLOWER_PORT = env_int("FLOWER_PORT", 5555, minimum=1)
FLOWER_URL = env_str("FLOWER_URL", f"http://{FLOWER_ADDRESS}:{FLOWER_PORT}/")

# --- REST API (queueing/api/, docs/api.md) ---------------------------------------------

REST_FRAMEWORK = {
    # JWT for services and scripts, the admin's session for a browser (CSRF-checked).
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework_simplejwt.authentication.JWTAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    # Closed by default: a view that forgets its permissions is not public.
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_THROTTLE_CLASSES": ["queueing.api.throttles.GeneralThrottle"],
    # Refuses bodies nested deeper than 32 levels or over 100,000 values with a 400.
    "DEFAULT_PARSER_CLASSES": ["queueing.api.parsers.BoundedJSONParser"],
    # Proxies in front of the web server whose X-Forwarded-For is trusted: 0 (default)
    # ignores the header, so a client cannot pick the address it is throttled by.
    "NUM_PROXIES": env_int("TRUSTED_PROXY_COUNT", 0, minimum=0),
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": 50,
    "EXCEPTION_HANDLER": "queueing.api.errors.exception_handler",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}
SIMPLE_JWT = {
    "ACCESS_TOKEN_LIFETIME": dt.timedelta(minutes=env_int("JWT_ACCESS_MINUTES", 15, minimum=1)),
    "REFRESH_TOKEN_LIFETIME": dt.timedelta(hours=env_int("JWT_REFRESH_HOURS", 24, minimum=1)),
    "SIGNING_KEY": SECRET_KEY,
    "ALGORITHM": "HS256",
    "UPDATE_LAST_LOGIN": True,
    # A refresh returns a new refresh token and blacklists the old one.
    "ROTATE_REFRESH_TOKENS": True,
    "BLACKLIST_AFTER_ROTATION": True,
    # Tokens carry a hash of the password: a password change refuses every older token.
    "CHECK_REVOKE_TOKEN": True,
    "REVOKE_TOKEN_CLAIM": "hash_password",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Taskyard queue API",
    "DESCRIPTION": "Jobs, queues, dead letters and recurring jobs of the Taskyard platform. "
    "Every endpoint but health needs a JWT (POST /api/token/) or an admin session.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # The schema names every operation: like every endpoint but health, not public.
    "SERVE_PERMISSIONS": ["rest_framework.permissions.IsAuthenticated"],
    # Swagger UI from the vendored sidecar package: no CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "ENUM_NAME_OVERRIDES": {"JobStatusEnum": "queueing.models.JobStatus"},
}
# Shared by every web process (Redis sliding log, queueing/control/limits.py): N per period.
# Periods: s, m, h, or a number of minutes ("15m" is 15 minutes).
API_THROTTLE_RATES = {
    # Reads are cheap and an operator polls during an incident; writes are the seed's 100.
    # Users with operate_queues (admins) are limited by admin_ops only.
    "read": env_str("API_THROTTLE_READ", "1000/15m"),
    "write": env_str("API_THROTTLE_WRITE", env_str("API_THROTTLE_GENERAL", "100/15m")),
    "job_create": env_str("API_THROTTLE_JOB_CREATE", "20/m"),  # new jobs, per user
    "admin_ops": env_str("API_THROTTLE_ADMIN_OPS", "50/5m"),  # pause, clean, replay...
    # Logins: per client address, and per account whatever the address.
    "login_address": env_str("API_THROTTLE_LOGIN_ADDRESS", "100/15m"),
    "login_account": env_str("API_THROTTLE_LOGIN_ACCOUNT", "20/15m"),
}
# Largest API request body; job arguments are capped lower (JOB_ARGS_MAX_BYTES).
API_MAX_REQUEST_BYTES = env_int("API_MAX_REQUEST_BYTES", 512 * 1024, minimum=1024)
DATA_UPLOAD_MAX_MEMORY_SIZE = API_MAX_REQUEST_BYTES

# --- Providers (queueing/control/providers.py, docs/providers.md) ------------------------
# Every call to a third-party service goes through the provider guard: a circuit breaker
# and an adaptive rate shared by all workers (Redis), cost and health recorded. Without a
# real key in DEBUG, each points at its local fake (devstack/fakes, started by make run);
# with the key set (or DEBUG off) at the real service.


def _provider_url(key_variable: str, url_variable: str, real: str, fake_port: int) -> str:
    if env_str(url_variable):
        return env_str(url_variable)
    return real if env_str(key_variable) or not DEBUG else f"http://127.0.0.1:{fake_port}"


TASKYARD_PROVIDERS: dict[str, dict] = {
    "stripe": {
        "base_url": _provider_url(
            "STRIPE_API_KEY", "STRIPE_API_BASE", "https://api.stripe.com", 12111
        ),
        "timeout": 20,  # Stripe's own client default is 80 s; a payment job should not hang
        "rate_limit": "25/s",  # Stripe live mode allows 100/s; leave room for the dashboard
        "concurrency": 4,
        "monthly_budget": env_float("STRIPE_MONTHLY_BUDGET", 0.0, minimum=0.0) or None,
    },
    "twilio": {
        "base_url": _provider_url(
            "TWILIO_AUTH_TOKEN", "TWILIO_API_BASE", "https://api.twilio.com", 12112
        ),
        "timeout": 15,
        "rate_limit": "1/s",  # one SMS per second per sender number (seed design)
        "cost_per_call": 0.0079,  # USD per SMS segment, US
        "monthly_budget": env_float("TWILIO_MONTHLY_BUDGET", 0.0, minimum=0.0) or None,
    },
    "sendgrid": {
        "base_url": _provider_url(
            "SENDGRID_API_KEY", "SENDGRID_API_BASE", "https://api.sendgrid.com", 12113
        ),
        "timeout": 15,
        "rate_limit": "100/m",  # SendGrid plan limit (seed design)
        "cost_per_call": 0.0006,  # USD per email on a Pro plan
        "monthly_budget": env_float("SENDGRID_MONTHLY_BUDGET", 0.0, minimum=0.0) or None,
    },
    # Web Push (notifications): each subscription names its push service; base_url is
    # nominal and there is no health URL common to the browsers' services.
    "webpush": {
        "base_url": "https://fcm.googleapis.com",
        "timeout": 10,
        "rate_limit": "50/s",
        "health_check": "notifications.channels.push.health_check",
    },
    "airtable": {
        "base_url": _provider_url(
            "AIRTABLE_API_KEY", "AIRTABLE_API_BASE", "https://api.airtable.com", 12114
        ),
        "timeout": 30,
        # Airtable: 5 requests per second per base. The guard keeps one limit for every
        # base (conservative when several bases are synced); a test or bench against
        # the local fake raises it with AIRTABLE_RATE_LIMIT.
        "rate_limit": env_str("AIRTABLE_RATE_LIMIT", "5/s"),
    },
    # The data sync's REST sources (datasync/sources.py): each source names its own URL;
    # this is the guard's breaker and rate shared by them. Development: the REST fake.
    "datasync-rest": {
        "base_url": _provider_url(
            "DATASYNC_REST_TOKEN", "DATASYNC_REST_BASE", "https://api.example.com", 12116
        ),
        "timeout": 30,
        "rate_limit": env_str("DATASYNC_REST_RATE_LIMIT", "10/s"),
    },
}
# Road-network matrices for routing ("matrix": "osrm", docs/routing.md "Travel times"):
# OSRM_URL, else the local fake in development. Unset in production there is no provider
# and such a run uses the offline estimate (and says so): never a public demo server,
# whose usage policy forbids production traffic.
OSRM_URL = env_str("OSRM_URL") or ("http://127.0.0.1:12115" if DEBUG else "")
if OSRM_URL:
    TASKYARD_PROVIDERS["osrm"] = {
        "base_url": OSRM_URL,
        "timeout": 30,
        "rate_limit": "10/s",
        "concurrency": 2,
    }

# --- Inbound webhooks (datasync/, docs/webhooks.md) --------------------------------------
# POST /webhooks/<source>/: verified, stored, de-duplicated, processed as a job on
# external-api. A source is enabled by its secret; the development defaults (DEBUG only)
# match the local fakes' signing keys, so `make run` accepts the fakes' callbacks.
_DEV_WEBHOOK = DEBUG
WEBHOOK_SOURCES: dict[str, dict] = {
    "stripe": {
        "scheme": "stripe",  # Stripe-Signature: t=...,v1=HMAC-SHA256("t.body")
        "secret": env_str(
            "STRIPE_WEBHOOK_SECRET", "whsec_taskyard_development_only" if _DEV_WEBHOOK else ""
        ),
    },
    "twilio": {
        "scheme": "twilio",  # X-Twilio-Signature: HMAC-SHA1 of URL + sorted form params
        "secret": env_str(
            "TWILIO_AUTH_TOKEN", "taskyard-development-twilio-token" if _DEV_WEBHOOK else ""
        ),
    },
    "sendgrid": {
        "scheme": "sendgrid",  # ECDSA P-256 over timestamp + body (signed event webhook)
        # The fakes' development verification key (public, like every verification key).
        "secret": env_str(
            "SENDGRID_WEBHOOK_PUBLIC_KEY",
            "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEKkwc8XcSHUW5rue8Y3LrkJaDImUvDd860OIZ66i1M6pM"
            "udGZLpXt35qXgcuCGKVRJeJP8EnBVNdaAnbJGGd36Q=="
            if _DEV_WEBHOOK
            else "",
        ),
    },
    "airtable": {
        "scheme": "hmac",  # X-Taskyard-Signature: sha256=HMAC-SHA256("timestamp.body")
        "secret": env_str("AIRTABLE_WEBHOOK_SECRET", "taskyard-dev-hmac" if _DEV_WEBHOOK else ""),
    },
}
# A provider's event is a few KiB; SendGrid batches events into posts of a few hundred
# KiB. Django also refuses bodies over DATA_UPLOAD_MAX_MEMORY_SIZE (the API's limit).
WEBHOOK_MAX_BYTES = env_int("WEBHOOK_MAX_BYTES", 512 * 1024, minimum=1024)
# Signed timestamps older (or newer) than this are replays: 400. Stripe's own default.
WEBHOOK_TOLERANCE_SECONDS = env_int("WEBHOOK_TOLERANCE_SECONDS", 300, minimum=1)
# The same payload from the same source within this window is one delivery.
WEBHOOK_DEDUPE_SECONDS = 300

# --- Monitoring (docs/monitoring.md) ----------------------------------------------------

# Prometheus scrapes /metrics with "Authorization: Bearer $METRICS_TOKEN" (staff logins
# may look too). Unset: only staff logins.
METRICS_TOKEN = env_str("METRICS_TOKEN")
# /health/ready: queues that must have a live worker (None: every declared queue; a
# paused queue never needs one), how old the beat's and the relay's heartbeats may be.
HEALTH_WORKER_QUEUES: list[str] | None = None
HEALTH_BEAT_MAX_AGE_SECONDS = env_int("HEALTH_BEAT_MAX_AGE_SECONDS", 60, minimum=5)
HEALTH_RELAY_MAX_LAG_SECONDS = env_int("HEALTH_RELAY_MAX_LAG_SECONDS", 30, minimum=1)

# Alerts (queueing/observe/alerts.py), checked every minute by beat. Seed design thresholds.
ALERT_THRESHOLDS = {
    "backlog": env_int("ALERT_BACKLOG", 1000, minimum=1),  # jobs queued on one queue
    # Share of attempts that failed (retried, dead or lost) in the window: seed 002's
    # warning 2 % and critical 5 %.
    "failure_rate": env_float("ALERT_FAILURE_RATE", 0.02, minimum=0.0),
    "failure_rate_critical": env_float("ALERT_FAILURE_RATE_CRITICAL", 0.05, minimum=0.0),
    "min_attempts": 10,  # fewer attempts in the window: too few to judge a rate
    "average_run_seconds": env_float("ALERT_AVERAGE_RUN_SECONDS", 60.0, minimum=0.0),
    "dead_letters": env_int("ALERT_DEAD_LETTERS", 50, minimum=0),  # open, per queue
    "latency_warning_ms": env_float("ALERT_LATENCY_WARNING_MS", 750.0, minimum=0.0),
    "latency_critical_ms": env_float("ALERT_LATENCY_CRITICAL_MS", 1500.0, minimum=0.0),
    "window_minutes": env_int("ALERT_WINDOW_MINUTES", 15, minimum=1),
    # Jobs finished per hour below which, while jobs wait, throughput is an alert; 0 = off.
    # Seed 002's values are 8000 (warning) and 5000 (critical).
    "throughput_warning_per_hour": env_float("ALERT_THROUGHPUT_WARNING_PER_HOUR", 0.0, minimum=0),
    "throughput_critical_per_hour": env_float("ALERT_THROUGHPUT_CRITICAL_PER_HOUR", 0.0, minimum=0),
}
# Who gets alert emails (comma-separated), and an optional webhook, signed with
# "X-Taskyard-Signature: sha256=<HMAC of the body with ALERT_WEBHOOK_SECRET>".
ALERT_EMAILS = env_list("ALERT_EMAILS", [])
ALERT_WEBHOOK_URL = env_str("ALERT_WEBHOOK_URL")
ALERT_WEBHOOK_SECRET = env_str("ALERT_WEBHOOK_SECRET")
if ALERT_WEBHOOK_URL and not ALERT_WEBHOOK_SECRET:
    raise ImproperlyConfigured("ALERT_WEBHOOK_URL needs ALERT_WEBHOOK_SECRET to sign its calls")

# Email (alerts): real SMTP when EMAIL_HOST is set; without it, printed to the console.
EMAIL_HOST = env_str("EMAIL_HOST")
EMAIL_PORT = env_int("EMAIL_PORT", 25, minimum=1)
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER")
EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
EMAIL_TIMEOUT = 10
EMAIL_BACKEND = (
    "django.core.mail.backends.smtp.EmailBackend"
    if EMAIL_HOST
    else "django.core.mail.backends.console.EmailBackend"
)
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "taskyard@localhost")

# --- Security -------------------------------------------------------------------------

SESSION_COOKIE_SECURE = not DEBUG
CSRF_COOKIE_SECURE = not DEBUG
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"

# --- Logging --------------------------------------------------------------------------

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}

if _secret_key_missing:
    raise ImproperlyConfigured(
        "SECRET_KEY is required when DEBUG is off; set SECRET_KEY, or DEBUG=1 for local "
        "development (make run writes both to var/local.env, make test sets DEBUG=1)"
    )
