"""bench/pgcluster.py counts what PostgreSQL did: checked on a loop of single-row commits.

Needs the PostgreSQL server binaries (initdb, pg_ctl); skipped where they are missing.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import psycopg
import pytest

from bench import pgcluster

COMMITS = 200

try:
    pgcluster.find_bindir()
except pgcluster.PostgresNotFoundError as exc:
    pytest.skip(str(exc), allow_module_level=True)


@pytest.fixture(scope="module")
def cluster():
    # Not pytest's tmp_path: it is private to root, and the server runs as `postgres`.
    directory = Path(tempfile.gettempdir()) / f"taskyard-test-pgcluster-{os.getpid()}"
    with pgcluster.PrivatePostgres(directory) as pg:
        yield pg
    assert not directory.exists()


def test_single_row_commits_count_one_commit_one_wal_sync_each(cluster):
    url = cluster.create_database("probe_check")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE item (id bigserial PRIMARY KEY, n int NOT NULL)")
    probe = cluster.probe("probe_check")
    try:
        before = probe.snapshot()
        with psycopg.connect(url, autocommit=True) as conn:
            for n in range(COMMITS):
                conn.execute("INSERT INTO item (n) VALUES (%s)", (n,))
        after = probe.snapshot(wait_for_clients=True)
    finally:
        probe.close()
    per = pgcluster.delta(before, after, COMMITS)

    assert 1.0 <= per["commits_per_job"] <= 1.05  # plus the session's own few
    assert 0.9 <= per["wal_syncs_per_job"] <= 1.1  # synchronous_commit: one flush a commit
    assert 1.0 <= per["statements_per_job"] <= 2.0
    assert per["sessions_per_job"] == pytest.approx(1 / COMMITS)
    assert per["pg_cpu_us_per_job"] > 0


def test_probe_ignores_its_own_queries_and_other_databases(cluster):
    cluster.create_database("quiet")
    other = cluster.create_database("busy")
    probe = cluster.probe("quiet")
    try:
        before = probe.snapshot()
        with psycopg.connect(other, autocommit=True) as conn:
            for _ in range(20):
                conn.execute("SELECT 1")
        for _ in range(5):
            probe.snapshot()
        after = probe.snapshot(wait_for_clients=True)
    finally:
        probe.close()

    assert (after.statements, after.commits, after.sessions) == (
        before.statements,
        before.commits,
        before.sessions,
    )


def test_the_cluster_keeps_default_durability(cluster):
    settings = cluster.server_settings()

    assert settings["fsync"] == "on"
    assert settings["synchronous_commit"] == "on"
    assert settings["server_version"].startswith("15")
