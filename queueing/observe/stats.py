"""Queue statistics for the API, /metrics, the admin dashboard and the alert checks, at a
cost that does not grow with the ledger (docs/monitoring.md, "History").

- live counts: the open statuses over the partial index ``job_open_idx`` (as big as the
  backlog); succeeded and cancelled exactly while the ledger is small, from PostgreSQL's
  planner statistics once it is big (``EXACT_COUNT_MAX_JOBS``);
- the oldest waiting job: one probe per queue of ``job_waiting_idx``;
- what finished in a window: the 5-minute history rows (QueueStat,
  queueing/observe/history.py) for the buckets they cover and the workers' per-minute
  roll-ups in Redis (queueing/counters.py) for the minutes they do not. Run-time
  percentiles are bucket upper bounds (counters.RUN_BUCKETS), never a scan of attempts.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db import connection
from django.db.models import Sum
from django.utils import timezone

from queueing.control.pause import paused_queues_in_database
from queueing.counters import (
    MINUTE_TTL_SECONDS,
    RUN_BUCKETS,
    WAIT_BUCKETS,
    minute_rollups,
    rank_index,
)
from queueing.models import AttemptOutcome, Job, JobStatus, QueueStat

logger = logging.getLogger(__name__)

FAILED_OUTCOMES = (AttemptOutcome.RETRYING, AttemptOutcome.DEAD, AttemptOutcome.LOST)
OPEN_STATUSES = (
    JobStatus.SCHEDULED,
    JobStatus.QUEUED,
    JobStatus.RUNNING,
    JobStatus.RETRYING,
    JobStatus.DEAD,
)
FINISHED_STATUSES = (JobStatus.SUCCEEDED, JobStatus.CANCELLED)
# Up to this many jobs in the ledger (PostgreSQL's estimate), succeeded and cancelled jobs
# are counted exactly: an index-only count of 200,000 entries takes ~20 ms. Above, the
# count would grow with the ledger (≈1 s at 10 million), so the planner's estimate from
# its ANALYZE sample is used instead (autovacuum keeps it within a few per cent).
EXACT_COUNT_MAX_JOBS = 200_000
BUCKET = dt.timedelta(minutes=5)
ROLLUP_MINUTES = MINUTE_TTL_SECONDS // 60


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile of ``values`` (any order); None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    return float(ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)])


def _table() -> str:
    return connection.ops.quote_name(Job._meta.db_table)


def status_counts(statuses=None) -> dict[str, dict[str, int]]:
    """Queue -> status -> number of jobs, for ``statuses`` (default: all).

    COUNT(*) over the (queue, status) indexes, covering, and the statuses written into
    the SQL rather than bound: SQLite uses a partial index (job_open_idx) only when the
    query's WHERE matches its condition literally. They are our own constants, never
    input. With ``statuses=None`` the cost grows with the ledger: see job_counts()."""
    sql = f"SELECT queue, status, COUNT(*) FROM {_table()}"  # noqa: S608 - constants only
    if statuses is not None:
        literal = ", ".join(f"'{JobStatus(status).value}'" for status in statuses)
        sql += f" WHERE status IN ({literal})"
    counts: dict[str, dict[str, int]] = defaultdict(dict)
    with connection.cursor() as cursor:
        cursor.execute(sql + " GROUP BY queue, status")
        for queue, status, count in cursor.fetchall():
            counts[queue][status] = count
    return counts


def estimated_ledger_rows() -> int | None:
    """PostgreSQL's estimate of the jobs in the ledger (pg_class.reltuples, kept by
    ANALYZE); None when unknown (SQLite, or a table never analysed)."""
    if connection.vendor != "postgresql":
        return None
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT reltuples FROM pg_class WHERE oid = %s::regclass", [Job._meta.db_table]
        )
        row = cursor.fetchone()
    return int(row[0]) if row and row[0] >= 0 else None


def _estimated_count(queue: str, status: str) -> int:
    """The planner's row estimate for one queue and status (EXPLAIN, nothing is read)."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"EXPLAIN (FORMAT JSON) SELECT 1 FROM {_table()} "  # noqa: S608 - constants only
            "WHERE queue = %s AND status = %s",
            [queue, status],
        )
        plan = cursor.fetchone()[0]
    plan = json.loads(plan) if isinstance(plan, str) else plan
    return int(plan[0]["Plan"]["Plan Rows"])


@dataclass
class JobCounts:
    counts: dict[str, dict[str, int]]
    estimated: bool = False  # succeeded and cancelled are the planner's estimate


def job_counts(queues: Iterable[str] | None = None) -> JobCounts:
    """Queue -> status -> jobs, every status, at a cost bounded by the backlog: open
    statuses exact (job_open_idx); finished ones exact up to EXACT_COUNT_MAX_JOBS in the
    ledger, estimated above (PostgreSQL only; SQLite always counts)."""
    counts = status_counts(OPEN_STATUSES)
    size = estimated_ledger_rows()
    if size is None or size <= EXACT_COUNT_MAX_JOBS:
        for queue, row in status_counts(FINISHED_STATUSES).items():
            counts[queue].update(row)
        return JobCounts(counts)
    for queue in queues or settings.TASKYARD_QUEUES:
        for status in FINISHED_STATUSES:
            counts[queue][status] = _estimated_count(queue, status)
    return JobCounts(counts, estimated=True)


def oldest_waiting(queues: Iterable[str] | None = None) -> dict[str, dt.datetime]:
    """Queue -> when its oldest waiting (queued) job was enqueued, for the queues that
    have one; ``queues`` limits the search (default: every declared queue). One probe of
    the partial index job_waiting_idx per queue (the status literal, for SQLite)."""
    names = list(queues if queues is not None else settings.TASKYARD_QUEUES)
    if not names:
        return {}
    table = _table()
    one = (
        f"SELECT %s, (SELECT MIN(enqueued_at) FROM {table} WHERE status = 'queued' AND queue = %s)"  # noqa: S608 - constants only
    )
    sql = " UNION ALL ".join([one] * len(names))
    params = [value for name in names for value in (name, name)]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    out = {}
    for queue, value in rows:
        if value is None:
            continue
        # SQLite returns the aggregate's text
        at = dt.datetime.fromisoformat(value) if isinstance(value, str) else value
        out[queue] = timezone.make_aware(at, dt.UTC) if timezone.is_naive(at) else at
    return out


def queue_overview(queues: list[str] | None = None) -> list[dict]:
    """Per declared queue: jobs per status, age of the oldest waiting job, paused flag."""
    queues = queues or list(settings.TASKYARD_QUEUES)
    counts = job_counts(queues).counts
    oldest = oldest_waiting(queues)
    paused = paused_queues_in_database()
    now = timezone.now()
    return [
        {
            "queue": queue,
            "paused": queue in paused,
            "counts": {status: counts[queue].get(status, 0) for status in JobStatus.values},
            "oldest_waiting_seconds": (
                round((now - oldest[queue]).total_seconds(), 3) if queue in oldest else None
            ),
        }
        for queue in queues
    ]


# --- windows: history rows + minute roll-ups ---------------------------------------------


def _histogram_list(row: dict, prefix: str, edges: tuple[float, ...]) -> list[int]:
    """Counts per bucket of a roll-up (``<prefix><index>``, ``<prefix>inf``) or of a
    history row's JSON histogram (prefix "")."""
    keys = [f"{prefix}{index}" for index in range(len(edges))] + [f"{prefix}inf"]
    return [int(row.get(key) or 0) for key in keys]


@dataclass
class Tally:
    """Attempts counted over some minutes: the sum of history rows and roll-ups."""

    attempts: int = 0
    succeeded: int = 0
    failed: int = 0
    histogram: list[int] = field(default_factory=lambda: [0] * (len(RUN_BUCKETS) + 1))
    run_ms_total: int = 0  # the attempts' run times added up
    # attempts per wait bucket (WAIT_BUCKETS); attempts whose wait is unknown (a lost
    # job the relay counted) are in none
    waits: list[int] = field(default_factory=lambda: [0] * (len(WAIT_BUCKETS) + 1))

    def add_rollup(self, row: dict[str, int]) -> None:
        runs = _histogram_list(row, "run", RUN_BUCKETS)
        self.succeeded += row.get("succeeded", 0)
        self.failed += row.get("failed", 0)
        self.attempts += sum(runs)
        self.histogram = [a + b for a, b in zip(self.histogram, runs, strict=True)]
        self.run_ms_total += row.get("duration_ms", 0)
        waits = _histogram_list(row, "wait", WAIT_BUCKETS)
        self.waits = [a + b for a, b in zip(self.waits, waits, strict=True)]

    def add_history(self, row: Mapping[str, Any]) -> None:
        """Add a QueueStat row's values (attempts, succeeded, failed, run_histogram,
        run_ms_total, wait_histogram)."""
        self.add(
            Tally(
                row["attempts"],
                row["succeeded"],
                row["failed"],
                _histogram_list(row["run_histogram"] or {}, "", RUN_BUCKETS),
                row["run_ms_total"],
                _histogram_list(row["wait_histogram"] or {}, "", WAIT_BUCKETS),
            )
        )

    def add(self, other: Tally) -> None:
        self.attempts += other.attempts
        self.succeeded += other.succeeded
        self.failed += other.failed
        for index, count in enumerate(other.histogram):
            self.histogram[index] += count
        self.run_ms_total += other.run_ms_total
        for index, count in enumerate(other.waits):
            self.waits[index] += count

    def run_ms(self, q: float) -> float | None:
        """The q-th percentile of run time in ms, as its bucket's upper edge (the top edge
        for the slowest bucket, which has none): counters.run_percentile's rule."""
        index = rank_index(self.histogram, q)
        if index is None:
            return None
        return float(RUN_BUCKETS[min(index, len(RUN_BUCKETS) - 1)] * 1000)

    def wait_range_ms(self, q: float) -> tuple[float, float] | None:
        """The bucket (lower, upper edge in ms) the q-th percentile of wait falls in, the
        upper edge infinite past WAIT_BUCKETS' last; None without waits. The latency
        thresholds are bucket edges, so "upper edge over the threshold" is exactly "the
        percentile over the threshold"."""
        index = rank_index(self.waits, q)
        if index is None:
            return None
        edges = (0.0, *WAIT_BUCKETS, math.inf)
        return edges[index] * 1000, edges[index + 1] * 1000


def _history(start: dt.datetime, queues: list[str]) -> dict[int, Tally]:
    """Bucket's first minute -> the history rows of ``queues`` from ``start`` on, added
    up in SQL: one query grouped by bucket over the bucket index, each run-time bucket of
    the JSON histogram summed as its own column (no set-returning function, so no plan
    that fans rows out), however long the window."""
    table = connection.ops.quote_name(QueueStat._meta.db_table)
    marks = ", ".join(["%s"] * len(queues))
    keys = [str(index) for index in range(len(RUN_BUCKETS))] + ["inf"]
    if connection.vendor == "postgresql":
        minute = "CAST(EXTRACT(EPOCH FROM bucket) AS BIGINT) / 60"
        field = "CAST(run_histogram ->> '{}' AS INTEGER)"
    else:
        minute = "CAST(strftime('%%s', bucket) AS INTEGER) / 60"
        field = "json_extract(run_histogram, '$.\"{}\"')"
    sums = ", ".join(f"SUM({field.format(key)})" for key in keys)
    out: dict[int, Tally] = {}
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {minute}, SUM(attempts), SUM(succeeded), SUM(failed), {sums} "  # noqa: S608
            f"FROM {table} WHERE bucket >= %s AND queue IN ({marks}) GROUP BY bucket",
            [start, *queues],
        )
        for bucket, attempts, succeeded, failed, *histogram in cursor.fetchall():
            out[int(bucket)] = Tally(
                int(attempts), int(succeeded), int(failed), [int(n or 0) for n in histogram]
            )
    return out


def day_totals(now: dt.datetime | None = None) -> dict[str, dict[str, int]]:
    """Queue -> attempts, succeeded and failed over the last 24 hours of history rows."""
    since = (now or timezone.now()) - dt.timedelta(hours=24)
    rows = (
        QueueStat.objects.filter(bucket__gte=since)
        .values("queue")
        .annotate(attempts=Sum("attempts"), succeeded=Sum("succeeded"), failed=Sum("failed"))
        .order_by()
    )
    return {
        row["queue"]: {key: row[key] or 0 for key in ("attempts", "succeeded", "failed")}
        for row in rows
    }


def _minute_of(moment: dt.datetime) -> int:
    return int(moment.timestamp() // 60)


def _bucket_of_minute(minute: int) -> int:
    """The first minute of the 5-minute bucket ``minute`` falls in."""
    return minute - minute % 5


def _window(
    minutes: int,
    queues: list[str],
    now: dt.datetime,
    *,
    every_kept_minute: bool = False,
) -> tuple[dict[int, Tally], dict[int, Tally], list[int]]:
    """(bucket -> history, minute -> roll-ups, the window's minutes), added up over
    ``queues``: history rows for the buckets inside the window, roll-ups (read only while
    Redis keeps them) for the minutes no row covers, or for every minute Redis still
    keeps with ``every_kept_minute``."""
    this_minute = _minute_of(now)
    window = list(range(this_minute - minutes + 1, this_minute + 1))
    history = _history(dt.datetime.fromtimestamp(window[0] * 60, tz=dt.UTC), queues)
    wanted = [
        m
        for m in window
        if m > this_minute - ROLLUP_MINUTES
        and (every_kept_minute or _bucket_of_minute(m) not in history)
    ]
    rollups: dict[int, Tally] = {}
    if wanted:
        try:
            raw = minute_rollups(queues, wanted)
        except Exception as exc:  # Redis down: the history rows still answer
            logger.warning("stats: minute roll-ups unavailable: %r", exc)
            raw = {}
        for rows in raw.values():
            for minute, row in zip(wanted, rows, strict=True):
                rollups.setdefault(minute, Tally()).add_rollup(row)
    return history, rollups, window


def queue_tallies(minutes: int, queues: list[str], now: dt.datetime) -> dict[str, Tally]:
    """Queue -> the attempts that ended in the last ``minutes`` (this minute and the ones
    before it), as ``window_stats`` counts them but per queue: the queue's measured
    history rows (not the demo's made-up ones) for the 5-minute buckets inside the
    window, its minute roll-ups for the minutes no such row covers (while Redis keeps
    them). The alert checks' source: a few rows of the bucket index and one pipelined
    read of minutes x queues small hashes, whatever the size of the ledger."""
    this_minute = _minute_of(now)
    window = range(this_minute - minutes + 1, this_minute + 1)
    start = dt.datetime.fromtimestamp(window[0] * 60, tz=dt.UTC)
    tallies = {queue: Tally() for queue in queues}
    covered: dict[str, set[int]] = defaultdict(set)
    rows = QueueStat.objects.filter(
        bucket__gte=start, bucket__lte=now - BUCKET, queue__in=queues, is_demo=False
    ).values(
        "queue",
        "bucket",
        "attempts",
        "succeeded",
        "failed",
        "run_histogram",
        "run_ms_total",
        "wait_histogram",
    )
    for row in rows:
        tallies[row["queue"]].add_history(row)
        covered[row["queue"]].add(_minute_of(row["bucket"]))
    wanted = {
        queue: {
            m
            for m in window
            if m > this_minute - ROLLUP_MINUTES and _bucket_of_minute(m) not in covered[queue]
        }
        for queue in queues
    }
    needed = sorted(set().union(*wanted.values()))
    if not needed:
        return tallies
    try:
        raw = minute_rollups(queues, needed)
    except Exception as exc:  # Redis down: the history rows still answer
        logger.warning("stats: minute roll-ups unavailable: %r", exc)
        return tallies
    for queue, per_minute in raw.items():
        for minute, rollup in zip(needed, per_minute, strict=True):
            if minute in wanted[queue]:
                tallies[queue].add_rollup(rollup)
    return tallies


def window_stats(queue: str | None = None, minutes: int = 60) -> dict:
    """Attempts that ended in the last ``minutes``: throughput, failure rate, run time."""
    queues = [queue] if queue else list(settings.TASKYARD_QUEUES)
    history, rollups, _ = _window(minutes, queues, timezone.now())
    tally = Tally()
    for part in (*history.values(), *rollups.values()):
        tally.add(part)
    return {
        "window_minutes": minutes,
        "attempts": tally.attempts,
        "succeeded": tally.succeeded,
        "failed": tally.failed,
        "failure_rate": round(tally.failed / tally.attempts, 4) if tally.attempts else 0.0,
        "throughput_per_minute": round(tally.succeeded / minutes, 3),
        "run_ms_p50": tally.run_ms(50),
        "run_ms_p95": tally.run_ms(95),
    }


def time_series(minutes: int = 60, queue: str | None = None) -> list[dict]:
    """One point per minute over the last ``minutes``: finished, failed, run time p50/p95,
    and (for the current minute only) the backlog. A minute comes from its roll-up in Redis
    (``source: minute``) in a window of up to two hours, or when no history row covers
    it; otherwise from its 5-minute history rows, whose counts are spread evenly over
    its minutes (``source: history``)."""
    now = timezone.now()
    queues = [queue] if queue else list(settings.TASKYARD_QUEUES)
    # Up to the two hours Redis keeps, every minute from its roll-up; a longer window
    # reads roll-ups only where no history row covers the minute (the last few minutes),
    # so a day's series costs one grouped query and a handful of HGETALLs.
    history, rollups, window = _window(
        minutes, queues, now, every_kept_minute=minutes <= ROLLUP_MINUTES
    )
    backlog = sum(
        row.get(JobStatus.QUEUED, 0)
        for name, row in status_counts([JobStatus.QUEUED]).items()
        if name in queues
    )
    this_minute = _minute_of(now)
    # A bucket whose minutes Redis no longer has (expired, or a wiped Redis) while its
    # history rows counted attempts: its minutes come from the rows.
    from_rollups: dict[int, int] = defaultdict(int)
    for minute, tally in rollups.items():
        from_rollups[_bucket_of_minute(minute)] += tally.attempts
    points = []
    empty = Tally()
    for minute in window:
        bucket = _bucket_of_minute(minute)
        if bucket in history and not from_rollups.get(bucket):
            tally, share, source = history[bucket], 5, "history"
        else:
            tally, share, source = rollups.get(minute, empty), 1, "minute"
        points.append(
            {
                "minute": dt.datetime.fromtimestamp(minute * 60, tz=dt.UTC).isoformat(),
                "source": source,
                "succeeded": _spread(tally.succeeded, share),
                "failed": _spread(tally.failed, share),
                "failure_rate": round(tally.failed / tally.attempts, 4) if tally.attempts else 0.0,
                "run_ms_p50": tally.run_ms(50),
                "run_ms_p95": tally.run_ms(95),
                "backlog": backlog if minute == this_minute else None,
            }
        )
    return points


def _spread(count: int, minutes: int) -> int | float:
    return count if minutes == 1 else round(count / minutes, 2)
