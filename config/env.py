"""Typed readers for environment variables.

Every setting that comes from the environment goes through one of these helpers, so a
malformed value stops the process at start with a message naming the variable, instead of
surfacing later as a confusing runtime error (healthchecks' ``hc/settings.py`` pattern).
Every variable read here is documented in ``.env.example``.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from django.core.exceptions import ImproperlyConfigured

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _raw(name: str) -> str | None:
    """The variable's value, or None when unset or blank."""
    value = os.environ.get(name)
    if value is None or value.strip() == "":
        return None
    return value.strip()


def env_str(name: str, default: str = "") -> str:
    value = _raw(name)
    return default if value is None else value


def env_bool(name: str, default: bool) -> bool:
    value = _raw(name)
    if value is None:
        return default
    lowered = value.lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ImproperlyConfigured(
        f"{name}={value!r} is not a boolean; use one of: {', '.join(sorted(_TRUE | _FALSE))}"
    )


def env_int(name: str, default: int, *, minimum: int | None = None) -> int:
    value = _raw(name)
    if value is None:
        return default
    try:
        number = int(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={value!r} is not an integer") from None
    if minimum is not None and number < minimum:
        raise ImproperlyConfigured(f"{name}={number} is below the minimum of {minimum}")
    return number


def env_float(name: str, default: float, *, minimum: float | None = None) -> float:
    value = _raw(name)
    if value is None:
        return default
    try:
        number = float(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={value!r} is not a number") from None
    if minimum is not None and number < minimum:
        raise ImproperlyConfigured(f"{name}={number} is below the minimum of {minimum}")
    return number


def env_list(name: str, default: list[str]) -> list[str]:
    """A comma-separated list; blank items are dropped."""
    value = _raw(name)
    if value is None:
        return list(default)
    return [item.strip() for item in value.split(",") if item.strip()]


def env_choice(name: str, default: str, choices: tuple[str, ...]) -> str:
    value = _raw(name)
    if value is None:
        return default
    if value not in choices:
        raise ImproperlyConfigured(f"{name}={value!r} is not one of: {', '.join(choices)}")
    return value


# --- Database -------------------------------------------------------------------------

_POSTGRES_SCHEMES = {"postgres", "postgresql", "pgsql"}

# How long a SQLite connection waits for another process's write lock before raising
# "database is locked". Web, worker and beat share one file in development; 20 s rides
# out a long migration or a burst of result writes.
SQLITE_BUSY_TIMEOUT_SECONDS = 20


def parse_database_url(url: str, *, base_dir: Path, variable: str = "DATABASE_URL") -> dict:
    """Turn ``sqlite:///path`` or ``postgres://user:pass@host:port/name`` into a Django
    ``DATABASES`` entry. Anything else raises ImproperlyConfigured naming ``variable``."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme == "sqlite":
        # sqlite:///relative/to/cwd.db is ambiguous; we take sqlite:////abs/path.db as
        # absolute and sqlite:///name.db as relative to the project directory.
        raw_path = unquote(parts.path)
        if not raw_path or raw_path == "/":
            raise ImproperlyConfigured(f"{variable}={url!r} names no SQLite file")
        path = Path(raw_path[1:]) if raw_path.startswith("/") else Path(raw_path)
        if not path.is_absolute():
            path = base_dir / path
        return sqlite_database(path)
    if scheme in _POSTGRES_SCHEMES:
        name = unquote(parts.path.lstrip("/"))
        if not name:
            raise ImproperlyConfigured(f"{variable}={url!r} names no database")
        try:
            port = parts.port
        except ValueError:
            raise ImproperlyConfigured(f"{variable}={url!r} has an invalid port") from None
        options = {key: values[-1] for key, values in parse_qs(parts.query).items()}
        return {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": name,
            "USER": unquote(parts.username or ""),
            "PASSWORD": unquote(parts.password or ""),
            "HOST": unquote(parts.hostname or ""),
            "PORT": str(port or ""),
            "OPTIONS": options,
            # Persistent connections for the web process, pinged before each request's
            # first query. Workers set their own age and skip the ping
            # (queueing/worker/connections.py).
            "CONN_MAX_AGE": 60,
            "CONN_HEALTH_CHECKS": True,
        }
    raise ImproperlyConfigured(
        f"{variable}={url!r} is not a database URL; expected sqlite:///path/to/file.sqlite3 "
        "or postgres://user:password@host:5432/name"
    )


def sqlite_database(path: Path) -> dict:
    # SQLite creates the file but not its folder (var/ on a fresh clone).
    path.parent.mkdir(parents=True, exist_ok=True)
    return {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": str(path),
        "OPTIONS": {
            "timeout": SQLITE_BUSY_TIMEOUT_SECONDS,
            # WAL lets readers (web, Flower-driven queries) proceed while the worker
            # writes; synchronous=NORMAL is durable across process crashes in WAL mode.
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            # Take the write lock at BEGIN, so two writers queue on the busy timeout
            # instead of one failing at once on a read-to-write lock upgrade.
            "transaction_mode": "IMMEDIATE",
        },
        # pytest-django would otherwise use an in-memory database that a worker process
        # cannot see; a file next to the real one is shared with the test's workers.
        "TEST": {"NAME": str(path.with_name(f"test_{path.name}"))},
    }


def database_url_for(settings_dict: dict) -> str:
    """The DATABASE_URL that points another process at ``settings_dict``'s database
    (used by the test harness to give its worker processes the test database)."""
    engine = settings_dict["ENGINE"]
    if engine.endswith("sqlite3"):
        return f"sqlite:///{settings_dict['NAME']}"
    if engine.endswith("postgresql"):
        from urllib.parse import quote

        auth = quote(settings_dict.get("USER") or "", safe="")
        if settings_dict.get("PASSWORD"):
            auth += ":" + quote(settings_dict["PASSWORD"], safe="")
        host = settings_dict.get("HOST") or ""
        port = settings_dict.get("PORT") or ""
        netloc = f"{auth}@{host}" if auth else host
        if port:
            netloc += f":{port}"
        return f"postgres://{netloc}/{quote(settings_dict['NAME'], safe='')}"
    raise ImproperlyConfigured(f"no DATABASE_URL form for engine {engine}")


# --- Redis ----------------------------------------------------------------------------

_REDIS_SCHEMES = {"redis", "rediss", "unix"}


def parse_redis_url(url: str, variable: str = "REDIS_URL") -> str:
    """Validate a redis-py style URL (``redis://``, ``rediss://`` or ``unix://``)."""
    parts = urlsplit(url)
    if parts.scheme not in _REDIS_SCHEMES:
        raise ImproperlyConfigured(
            f"{variable}={url!r} is not a Redis URL; expected redis://host:6379/0, "
            "rediss://… or unix:///path/to/redis.sock"
        )
    if parts.scheme == "unix" and not parts.path:
        raise ImproperlyConfigured(f"{variable}={url!r} names no socket path")
    if parts.scheme != "unix":
        if not parts.hostname:
            raise ImproperlyConfigured(f"{variable}={url!r} names no host")
        try:
            parts.port  # noqa: B018 - raises ValueError on a malformed port
        except ValueError:
            raise ImproperlyConfigured(f"{variable}={url!r} has an invalid port") from None
    return url


def broker_url_from_redis_url(url: str) -> str:
    """kombu spells a unix-socket Redis ``redis+socket:///path``; redis-py ``unix:///path``."""
    if url.startswith("unix://"):
        return "redis+socket://" + url[len("unix://") :]
    return url


def load_env_file(path: Path) -> bool:
    """Fill unset environment variables from ``path`` (KEY=VALUE lines, # comments);
    variables already set win. Returns whether the file exists. A line that is not
    KEY=VALUE is an ImproperlyConfigured naming the file and line."""
    if not path.is_file():
        return False
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        key, sep, value = text.partition("=")
        if not sep or not key.strip().isidentifier():
            raise ImproperlyConfigured(f"{path}:{number}: expected KEY=VALUE, got {text!r}")
        os.environ.setdefault(key.strip(), value.strip())
    return True
