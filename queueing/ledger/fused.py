"""A successful attempt recorded in one statement: the job's outcome, its attempt row and
Celery's result row, one commit (issue 18, docs/performance.md).

Before, a tracked job's success cost two commits: the ledger's (UPDATE of the job and
INSERT of the attempt, in a transaction: five round trips) and then Celery's own result
write (django-celery-results: a transaction with a SELECT and an INSERT). Now the
worker tells Celery not to store the result of a tracked job (the message says
``ignore_result``) and writes the same ``TaskResult`` row itself, in the outcome's
statement, so AsyncResult, Flower and the admin see exactly what they saw before, and
the result row can no longer say something the ledger does not (a crash between the two
writes used to leave a succeeded job with no result row).

On PostgreSQL the three writes are one statement (data-modifying CTEs); the attempt and
result rows are inserted only if the guarded UPDATE matched, so a lost lease writes
nothing. SQLite has no data-modifying CTEs: there it is three statements in one
transaction, same effect. Failures keep Celery's path (their traceback and state
handling are Celery's, and they are rare).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from celery import states
from django.db import connection, transaction
from django.db.models import AutoField, BigAutoField, Model, SmallAutoField

from queueing.models import Job, JobAttempt, JobStatus

_AUTO = (AutoField, BigAutoField, SmallAutoField)


def result_row(task, value: Any, summary: Any) -> Model | None:
    """The django-celery-results row Celery would store for this success, unsaved; None
    when results are not stored in the database (another backend keeps Celery's path).
    A value the result serializer cannot encode is stored as the ledger's summary."""
    from django_celery_results.backends.database import DatabaseBackend
    from django_celery_results.models import TaskResult
    from kombu.exceptions import EncodeError

    backend = task.backend
    if not isinstance(backend, DatabaseBackend):
        return None
    request = task.request
    try:
        content_type, content_encoding, encoded = backend.encode_content(value)
    except EncodeError:
        content_type, content_encoding, encoded = backend.encode_content(summary)
    # The backend's own helpers, so the row is the one Celery writes (pinned
    # django-celery-results: these are its _store_result's steps).
    meta = {
        **backend._get_meta_from_request(request),
        "children": backend.current_task_children(request),
    }
    _, _, encoded_meta = backend.encode_content(meta)
    return TaskResult(
        task_id=request.id,
        status=states.SUCCESS,
        result=encoded,
        content_type=content_type,
        content_encoding=content_encoding,
        meta=encoded_meta,
        **backend._get_extended_properties(request, None),
    )


def _columns(instance: Model) -> tuple[list[str], list[str], list[Any]]:
    """Quoted columns, placeholders and database values of ``instance``'s concrete
    fields (an auto id left to the database)."""
    quote = connection.ops.quote_name
    typed = connection.vendor == "postgresql"
    columns, placeholders, values = [], [], []
    for field in instance._meta.concrete_fields:
        if isinstance(field, _AUTO):
            continue
        columns.append(quote(str(field.column)))
        # Typed on PostgreSQL: in INSERT ... SELECT a bare NULL or string would be text.
        # (Not on SQLite, where CAST(... AS datetime) would make a number of a date.)
        placeholders.append(f"CAST(%s AS {field.cast_db_type(connection)})" if typed else "%s")
        values.append(field.get_db_prep_save(field.pre_save(instance, add=True), connection))
    return columns, placeholders, values


def _upsert_clause(key: str, columns: list[str]) -> str:
    quote = connection.ops.quote_name
    keep = {quote(key), quote("date_created")}
    updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in columns if c not in keep)
    return f"ON CONFLICT ({quote(key)}) DO UPDATE SET {updates}"


def record_success_fused(
    job_id: str,
    token: int,
    finished_at: dt.datetime,
    summary: Any,
    attempt: JobAttempt,
    celery_result: Model | None,
) -> bool:
    """Mark the job succeeded if ``token`` still holds it and add ``attempt`` (and
    ``celery_result``, upserted on task_id); all or nothing. True if it matched."""
    quote = connection.ops.quote_name
    job_fields = {f.name: f for f in Job._meta.concrete_fields}
    update_values = [
        JobStatus.SUCCEEDED.value,
        job_fields["finished_at"].get_db_prep_save(finished_at, connection),
        job_fields["result"].get_db_prep_save(summary, connection),
        job_fields["id"].get_db_prep_save(job_id, connection),
        token,
        JobStatus.RUNNING.value,
    ]
    update = (
        f"UPDATE {quote(Job._meta.db_table)} SET status = %s, finished_at = %s, "  # noqa: S608 - no user input
        "result = %s, lease_owner = '', lease_expires_at = NULL "
        "WHERE id = %s AND fencing_token = %s AND status = %s"
    )
    rows: list[tuple[Model, str | None]] = [(attempt, None)]
    if celery_result is not None:
        rows.append((celery_result, "task_id"))
    if connection.vendor == "postgresql":
        parts = [f"done AS ({update} RETURNING id)"]
        values = list(update_values)
        for number, (instance, conflict_key) in enumerate(rows):
            columns, placeholders, row_values = _columns(instance)
            upsert = _upsert_clause(conflict_key, columns) if conflict_key else ""
            parts.append(
                f"row{number} AS (INSERT INTO {quote(instance._meta.db_table)} "  # noqa: S608 - names from models
                f"({', '.join(columns)}) SELECT {', '.join(placeholders)} FROM done {upsert})"
            )
            values.extend(row_values)
        with connection.cursor() as cursor:
            statement = f"WITH {', '.join(parts)} SELECT count(*) FROM done"  # noqa: S608
            cursor.execute(statement, values)
            return cursor.fetchone()[0] == 1
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(update, update_values)
        if cursor.rowcount != 1:
            return False
        for instance, conflict_key in rows:
            columns, placeholders, row_values = _columns(instance)
            upsert = _upsert_clause(conflict_key, columns) if conflict_key else ""
            cursor.execute(
                f"INSERT INTO {quote(instance._meta.db_table)} ({', '.join(columns)}) "  # noqa: S608
                f"VALUES ({', '.join(placeholders)}) {upsert}",
                row_values,
            )
    return True
