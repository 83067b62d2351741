"""Settings helpers: good values parse, bad ones name the variable."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from config.env import (
    broker_url_from_redis_url,
    database_url_for,
    env_bool,
    env_int,
    env_list,
    parse_database_url,
    parse_redis_url,
)

BASE = Path("/srv/taskyard")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("1", True), ("true", True), ("ON", True), ("0", False), ("no", False), ("", True)],
)
def test_env_bool_reads_common_spellings(monkeypatch, raw, expected):
    monkeypatch.setenv("DEBUG", raw)
    assert env_bool("DEBUG", default=True) is expected


def test_env_bool_refuses_maybe(monkeypatch):
    monkeypatch.setenv("DEBUG", "maybe")
    with pytest.raises(ImproperlyConfigured, match=r"DEBUG='maybe' is not a boolean"):
        env_bool("DEBUG", default=False)


def test_env_int_refuses_words_and_values_below_minimum(monkeypatch):
    monkeypatch.setenv("TASK_TIME_LIMIT", "soon")
    with pytest.raises(ImproperlyConfigured, match="TASK_TIME_LIMIT='soon' is not an integer"):
        env_int("TASK_TIME_LIMIT", 10)
    monkeypatch.setenv("TASK_TIME_LIMIT", "0")
    with pytest.raises(ImproperlyConfigured, match="TASK_TIME_LIMIT=0 is below the minimum"):
        env_int("TASK_TIME_LIMIT", 10, minimum=1)


def test_env_list_drops_blanks(monkeypatch):
    monkeypatch.setenv("ALLOWED_HOSTS", " a.example, ,b.example ")
    assert env_list("ALLOWED_HOSTS", []) == ["a.example", "b.example"]


def test_sqlite_url_relative_and_absolute(tmp_path):
    relative = parse_database_url("sqlite:///var/x.sqlite3", base_dir=tmp_path)
    assert relative["NAME"] == str(tmp_path / "var" / "x.sqlite3")
    absolute = parse_database_url(f"sqlite:///{tmp_path}/y.sqlite3", base_dir=BASE)
    assert absolute["NAME"] == str(tmp_path / "y.sqlite3")
    # Every process sharing the file waits on locks instead of failing at once.
    assert "journal_mode=WAL" in absolute["OPTIONS"]["init_command"]
    assert absolute["OPTIONS"]["timeout"] >= 5


def test_postgres_url_parts_and_round_trip():
    parsed = parse_database_url(
        "postgres://app:s%40cret@db.internal:6432/taskyard?sslmode=require", base_dir=BASE
    )
    assert parsed["ENGINE"] == "django.db.backends.postgresql"
    assert (parsed["USER"], parsed["PASSWORD"], parsed["HOST"], parsed["PORT"]) == (
        "app",
        "s@cret",
        "db.internal",
        "6432",
    )
    assert parsed["NAME"] == "taskyard"
    assert parsed["OPTIONS"] == {"sslmode": "require"}
    again = parse_database_url(database_url_for(parsed), base_dir=BASE)
    assert {k: again[k] for k in ("USER", "PASSWORD", "HOST", "PORT", "NAME")} == {
        k: parsed[k] for k in ("USER", "PASSWORD", "HOST", "PORT", "NAME")
    }


@pytest.mark.parametrize(
    "url",
    [
        "nonsense",
        "mysql://root@localhost/db",
        "postgres://localhost/",
        "sqlite://",
        "postgres://h:x/db",
    ],
)
def test_bad_database_urls_name_the_variable(url):
    with pytest.raises(ImproperlyConfigured, match="DATABASE_URL="):
        parse_database_url(url, base_dir=BASE)


@pytest.mark.parametrize(
    "url", ["redis://127.0.0.1:6379/0", "rediss://cache.internal:6380/1", "unix:///tmp/r.sock"]
)
def test_good_redis_urls(url):
    assert parse_redis_url(url) == url


@pytest.mark.parametrize("url", ["localhost:6379", "http://redis", "redis://:6379/0", "unix://"])
def test_bad_redis_urls_name_the_variable(url):
    with pytest.raises(ImproperlyConfigured, match="REDIS_URL="):
        parse_redis_url(url)


def test_kombu_spells_unix_sockets_differently():
    assert broker_url_from_redis_url("unix:///v/r.sock") == "redis+socket:///v/r.sock"
    assert broker_url_from_redis_url("redis://h:1/0") == "redis://h:1/0"
