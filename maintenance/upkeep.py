"""Database upkeep: keep the job ledger's hot tables lean and the planner's statistics
fresh, and report table sizes and bloat (issue 17, docs/operations.md).

PostgreSQL: ``VACUUM (ANALYZE)`` of the ledger's tables (jobs, attempts, results: every
job inserts and updates them, and pruning deletes them in bulk), then sizes and dead-row
estimates of every table from ``pg_stat_user_tables``. SQLite: ``ANALYZE`` and
``PRAGMA optimize``, sizes from the ``dbstat`` table, and the free pages a VACUUM would
give back. VACUUM cannot run inside a transaction: callers must not be atomic.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from django.apps import apps
from django.db import connection

from maintenance.models import UpkeepRun

logger = logging.getLogger(__name__)

# The ledger's hot tables, found through the app registry (queueing.models is
# queueing's own business): rows written by every job.
HOT_MODELS = (
    ("queueing", "Job"),
    ("queueing", "JobAttempt"),
    ("django_celery_results", "TaskResult"),
)
# Tables listed in a report (largest first); the hot ones are always in it.
REPORTED_TABLES = 25


class UpkeepError(Exception):
    pass


def hot_tables() -> list[str]:
    """db_table of each hot model that is installed."""
    tables = []
    for app_label, model_name in HOT_MODELS:
        try:
            tables.append(apps.get_model(app_label, model_name)._meta.db_table)
        except LookupError:
            continue
    return tables


def _dead_ratio(live: int, dead: int) -> float:
    return round(dead / (live + dead), 4) if live + dead else 0.0


def postgres_table_report() -> list[dict[str, Any]]:
    """Every user table with rows, dead rows, sizes and a bloat estimate (the dead rows'
    share of the table's heap), largest first."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT relname, n_live_tup, n_dead_tup, pg_total_relation_size(relid), "
            "pg_relation_size(relid), last_vacuum, last_autovacuum, last_analyze, "
            "last_autoanalyze FROM pg_stat_user_tables WHERE schemaname = 'public' "
            "ORDER BY pg_total_relation_size(relid) DESC, relname"
        )
        rows = cursor.fetchall()
    report = []
    for name, live, dead, total, heap, vacuum, autovacuum, analyze, autoanalyze in rows:
        ratio = _dead_ratio(live, dead)
        report.append(
            {
                "table": name,
                "rows": live,
                "dead_rows": dead,
                "dead_ratio": ratio,
                "total_bytes": total,
                "bloat_bytes": int(heap * ratio),
                "last_vacuum": _latest(vacuum, autovacuum),
                "last_analyze": _latest(analyze, autoanalyze),
            }
        )
    return report


def _latest(*moments: Any) -> str | None:
    present = [m for m in moments if m is not None]
    return max(present).isoformat() if present else None


def sqlite_table_report() -> tuple[list[dict[str, Any]], int]:
    """Every table with rows (from ANALYZE's sqlite_stat1), bytes (its pages and its
    indexes' from dbstat) and unused bytes inside them; plus the database's free bytes."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT name, tbl_name FROM sqlite_master WHERE type IN ('table','index')")
        owner: dict[str, str] = dict(cursor.fetchall())
        cursor.execute("SELECT name FROM sqlite_master WHERE name = 'sqlite_stat1'")
        rows: dict[str, int] = {}
        if cursor.fetchone():
            cursor.execute("SELECT tbl, stat FROM sqlite_stat1")
            for table, stat in cursor.fetchall():
                rows[table] = max(rows.get(table, 0), int(str(stat).split()[0]))
        sizes: dict[str, list[int]] = {}
        try:
            cursor.execute("SELECT name, SUM(pgsize), SUM(unused) FROM dbstat GROUP BY name")
            for name, size, unused in cursor.fetchall():
                entry = sizes.setdefault(owner.get(name, name), [0, 0])
                entry[0] += size or 0
                entry[1] += unused or 0
        except Exception as exc:  # a SQLite built without SQLITE_ENABLE_DBSTAT_VTAB
            logger.info("upkeep: no dbstat table in this SQLite (%r): no sizes", exc)
        cursor.execute("PRAGMA freelist_count")
        free_pages = cursor.fetchone()[0]
        cursor.execute("PRAGMA page_size")
        page_size = cursor.fetchone()[0]
    tables = sorted(
        {t for t in owner.values() if not t.startswith("sqlite_")},
        key=lambda t: (-sizes.get(t, [0, 0])[0], t),
    )
    report = [
        {
            "table": table,
            "rows": rows.get(table, 0),
            "total_bytes": sizes[table][0] if table in sizes else None,
            "unused_bytes": sizes[table][1] if table in sizes else None,
        }
        for table in tables
    ]
    return report, free_pages * page_size


def _trim(report: list[dict[str, Any]], hot: list[str]) -> list[dict[str, Any]]:
    return [r for i, r in enumerate(report) if i < REPORTED_TABLES or r["table"] in hot]


def run_upkeep() -> UpkeepRun:
    """VACUUM (ANALYZE) / ANALYZE + PRAGMA optimize, then record the table report."""
    if connection.in_atomic_block:
        raise UpkeepError("database upkeep cannot run inside a transaction (VACUUM refuses)")
    started = time.monotonic()
    hot = hot_tables()
    reclaimable: int | None = None
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            for table in hot:
                cursor.execute(f"VACUUM (ANALYZE) {connection.ops.quote_name(table)}")
            report = postgres_table_report()
        elif connection.vendor == "sqlite":
            cursor.execute("ANALYZE")
            cursor.execute("PRAGMA optimize")
            report, reclaimable = sqlite_table_report()
        else:
            raise UpkeepError(f"no upkeep for {connection.vendor} databases")
    run = UpkeepRun.objects.create(
        vendor=connection.vendor,
        duration_ms=int((time.monotonic() - started) * 1000),
        maintained=hot if connection.vendor == "postgresql" else ["(all tables)"],
        tables=_trim(report, hot),
        reclaimable_bytes=reclaimable,
    )
    logger.info("database upkeep done in %d ms: %s", run.duration_ms, ", ".join(hot))
    return run


def summary(run: UpkeepRun) -> dict[str, Any]:
    """The job result: what was maintained and the hot tables' figures."""
    hot = set(hot_tables())
    return {
        "upkeep_run": run.pk,
        "vendor": run.vendor,
        "duration_ms": run.duration_ms,
        "maintained": run.maintained,
        "reclaimable_bytes": run.reclaimable_bytes,
        "tables": [r for r in run.tables if r["table"] in hot],
        "largest": run.tables[:5],
    }
