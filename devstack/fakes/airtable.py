"""Fake Airtable Web API: list, read, create and update records, with Airtable's rate limit.

Follows the Web API reference (https://airtable.com/developers/web/api/introduction):

- ``GET /v0/{baseId}/{table}`` and ``POST /v0/{baseId}/{table}/listRecords``: pages of
  ``{"records": [...], "offset": "..."}``, ``pageSize`` (at most 100, the default),
  ``maxRecords``, ``offset`` and ``fields[]`` honoured; ``sort`` and ``view`` are
  accepted and ignored (records come in creation order). ``filterByFormula`` answers a
  narrow subset, the one an incremental sync sends: a comparison of the record's last
  modification time, ``IS_AFTER(LAST_MODIFIED_TIME(), DATETIME_PARSE('<ISO time>'))``,
  ``IS_BEFORE(...)`` and either wrapped in ``NOT(...)``; any other formula is refused
  with 422 ``INVALID_FILTER_BY_FORMULA`` rather than silently ignored.
- Every record keeps its last modification time (creation, then every change of a
  field), as Airtable does for ``LAST_MODIFIED_TIME()``. With ``last_modified_field``
  set (``"Last Modified"``), records also show it as that field, like a base with a
  "Last modified time" field.
- ``GET /v0/{baseId}/{table}/{recordId}``
- ``POST /v0/{baseId}/{table}``: one ``{"fields"}`` or up to 10 ``{"records"}``.
- ``PATCH``/``PUT /v0/{baseId}/{table}/{recordId}`` and ``/v0/{baseId}/{table}`` (up to
  10 records): PATCH merges fields, PUT replaces them.
- ``DELETE /v0/{baseId}/{table}/{recordId}``
- ``fake.seed(base, table, [fields, ...])`` stores many records at once and
  ``fake.change(base, table, record_id, fields)`` edits one as a user in the Airtable UI
  would (tests of large syncs, without thousands of HTTP requests).
- Records as Airtable writes them: ``{"id": "rec...", "createdTime": "...Z", "fields"}``
  with empty fields left out. Tables spring into existence on first use.
- ``Authorization: Bearer <token>`` required (401 ``AUTHENTICATION_REQUIRED``).
- Rate limit (https://airtable.com/developers/web/api/rate-limits): 5 requests per second
  per base; over it, 429 ``{"errors": [{"error": "RATE_LIMIT_REACHED", ...}]}`` and the
  base stays limited for 30 seconds, as at Airtable. Both numbers are attributes
  (``rate_limit``, ``rate_limit_penalty``), settable over HTTP as well
  (``POST /_fake/airtable/limits {"rate_limit": 5, "penalty": 1}``).

Point pyairtable here with ``pyairtable.Api(token, endpoint_url=fake.url)``.
"""

from __future__ import annotations

import collections
import contextlib
import json
import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote

from devstack.fakes.base import (
    DEFAULT_HANG_SECONDS,
    FakeProvider,
    Handler,
    Request,
    Response,
    random_id,
)

DEFAULT_PORT = 12114
RATE_LIMIT_PER_SECOND = 5
RATE_LIMIT_PENALTY_SECONDS = 30.0
MAX_PAGE_SIZE = 100
MAX_RECORDS_PER_WRITE = 10
_RATE_LIMITED = {
    "errors": [
        {"error": "RATE_LIMIT_REACHED", "message": "Rate limit exceeded. Please try again later"}
    ]
}


def _error(status: int, error_type: str, message: str) -> Response:
    return Response.json(status, {"error": {"type": error_type, "message": message}})


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + "000Z"


def _iso_ms(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


# The formulas the fake evaluates: [NOT(]IS_AFTER|IS_BEFORE(LAST_MODIFIED_TIME(), <time>)[)]
# where <time> is 'ISO' or DATETIME_PARSE('ISO').
_MODIFIED_FORMULA = re.compile(
    r"^\s*(?P<not>NOT\(\s*)?IS_(?P<op>AFTER|BEFORE)\(\s*LAST_MODIFIED_TIME\(\)\s*,\s*"
    r"(?:DATETIME_PARSE\(\s*)?'(?P<at>[^']+)'\s*\)?\s*\)\s*(?(not)\))\s*$"
)


def parse_modified_filter(formula: str) -> tuple[bool, str, datetime] | None:
    """(negated, "AFTER" or "BEFORE", time) of a supported formula, else None."""
    match = _MODIFIED_FORMULA.match(formula)
    if match is None:
        return None
    try:
        at = datetime.fromisoformat(match["at"].replace("Z", "+00:00"))
    except ValueError:
        return None
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return bool(match["not"]), match["op"], at


def _clean(fields: dict[str, Any]) -> dict[str, Any]:
    # Airtable leaves empty cells out of its answers.
    return {k: v for k, v in fields.items() if v not in (None, "", [], False)}


class AirtableFake(FakeProvider):
    name = "airtable"
    default_port = DEFAULT_PORT

    def __init__(
        self,
        *,
        rate_limit: int = RATE_LIMIT_PER_SECOND,
        rate_limit_penalty: float = RATE_LIMIT_PENALTY_SECONDS,
        last_modified_field: str | None = None,
        hang_seconds: float = DEFAULT_HANG_SECONDS,
    ) -> None:
        super().__init__(hang_seconds=hang_seconds)
        self.rate_limit = rate_limit
        self.rate_limit_penalty = rate_limit_penalty
        self.last_modified_field = last_modified_field
        self.reset_data()

    def reset_data(self) -> None:
        # (base id, table) → record id → record, in creation order
        self.tables: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}
        # record id → its last modification time (LAST_MODIFIED_TIME())
        self.modified_at: dict[str, datetime] = {}
        self._offsets: dict[str, tuple[str, str, int]] = {}
        self._recent: dict[str, collections.deque[float]] = {}
        self._limited_until: dict[str, float] = {}

    def routes(self) -> list[tuple[str, str, str, Handler]]:
        table = r"/v0/(?P<base>app[^/]+)/(?P<table>[^/]+)"
        record = rf"{table}/(?P<record_id>rec[^/]+)"
        return [
            ("GET", table, "records.list", self._limited(self._list_get)),
            ("POST", rf"{table}/listRecords", "records.list", self._limited(self._list_post)),
            ("GET", record, "records.get", self._limited(self._get)),
            ("POST", table, "records.create", self._limited(self._create)),
            ("PATCH", record, "records.update", self._limited(self._update_one)),
            ("PUT", record, "records.replace", self._limited(self._update_one)),
            ("PATCH", table, "records.batch_update", self._limited(self._update_many)),
            ("PUT", table, "records.batch_replace", self._limited(self._update_many)),
            ("DELETE", record, "records.delete", self._limited(self._delete)),
        ]

    def dispatch(self, request: Request) -> Response | None:
        if request.path == "/_fake/airtable/limits":  # control, outside faults and record
            return self._set_limits(request)
        return super().dispatch(request)

    def error_response(
        self, status: int, message: str, headers: dict[str, str] | None = None
    ) -> Response:
        if status == 429:
            return Response.json(429, _RATE_LIMITED, headers)
        error_type = "SERVER_ERROR" if status >= 500 else "INVALID_REQUEST_UNKNOWN"
        if status == 404:
            error_type = "NOT_FOUND"
        response = _error(status, error_type, message)
        response.headers.update(headers or {})
        return response

    def _set_limits(self, request: Request) -> Response:
        try:
            spec = request.json() or {}
            if "rate_limit" in spec:
                self.rate_limit = int(spec["rate_limit"])
            if "penalty" in spec:
                self.rate_limit_penalty = float(spec["penalty"])
        except (TypeError, ValueError, AttributeError, json.JSONDecodeError) as exc:
            return Response.json(400, {"error": str(exc)})
        with self.lock:
            self._recent.clear()
            self._limited_until.clear()
        return Response.json(
            200, {"rate_limit": self.rate_limit, "penalty": self.rate_limit_penalty}
        )

    # -- authentication and the per-base rate limit -----------------------------------

    def _limited(self, handler: Handler) -> Handler:
        def limited(request: Request, base: str, table: str, **groups: str) -> Response:
            auth = request.header("Authorization") or ""
            if not auth.startswith("Bearer ") or not auth[7:].strip():
                return _error(401, "AUTHENTICATION_REQUIRED", "Authentication required")
            if not self._admit(base):
                return Response.json(429, _RATE_LIMITED)
            return handler(request, base, unquote(table), **groups)

        return limited

    def _admit(self, base: str) -> bool:
        """Count a request against ``base``; False while the base is rate limited."""
        now = time.monotonic()
        with self.lock:
            if now < self._limited_until.get(base, 0.0):
                return False
            recent = self._recent.setdefault(base, collections.deque())
            while recent and recent[0] <= now - 1.0:
                recent.popleft()
            if len(recent) >= self.rate_limit:
                # The penalty is the whole punishment: afterwards a fresh second starts.
                self._limited_until[base] = now + self.rate_limit_penalty
                recent.clear()
                return False
            recent.append(now)
            return True

    # -- records ----------------------------------------------------------------------

    def _table(self, base: str, table: str) -> dict[str, dict[str, Any]]:
        return self.tables.setdefault((base, table), {})

    def _list_get(self, request: Request, base: str, table: str) -> Response:
        query = request.query
        options = {
            "pageSize": (query.get("pageSize") or [None])[0],
            "maxRecords": (query.get("maxRecords") or [None])[0],
            "offset": (query.get("offset") or [None])[0],
            "fields": query.get("fields[]") or query.get("fields"),
            "filterByFormula": (query.get("filterByFormula") or [None])[0],
        }
        return self._list(base, table, options)

    def _list_post(self, request: Request, base: str, table: str) -> Response:
        try:
            options = request.json() or {}
        except json.JSONDecodeError:
            return _error(422, "INVALID_REQUEST_UNKNOWN", "Invalid request: body is not JSON")
        return self._list(base, table, options)

    def _list(self, base: str, table: str, options: dict[str, Any]) -> Response:
        try:
            page_size = min(int(options.get("pageSize") or MAX_PAGE_SIZE), MAX_PAGE_SIZE)
            max_records = int(options["maxRecords"]) if options.get("maxRecords") else None
        except ValueError:
            return _error(422, "INVALID_REQUEST_UNKNOWN", "Invalid pageSize or maxRecords")
        wanted = options.get("fields")
        formula = options.get("filterByFormula") or ""
        condition = parse_modified_filter(formula) if formula else None
        if formula and condition is None:
            return _error(
                422,
                "INVALID_FILTER_BY_FORMULA",
                f"The fake evaluates only LAST_MODIFIED_TIME() comparisons, not {formula!r}",
            )
        with self.lock:
            start = 0
            if options.get("offset"):
                position = self._offsets.get(options["offset"])
                if position is None or position[:2] != (base, table):
                    return _error(
                        422,
                        "LIST_RECORDS_ITERATOR_NOT_AVAILABLE",
                        "The offset is not valid (expired or from another table)",
                    )
                start = position[2]
            records = list(self._table(base, table).values())
            if condition is not None:
                records = [r for r in records if self._matches(r["id"], condition)]
            if max_records is not None:
                records = records[:max_records]
            page = records[start : start + page_size]
            body: dict[str, Any] = {"records": [self._shown(r, wanted) for r in page]}
            if start + page_size < len(records):
                next_id = records[start + page_size]["id"]
                token = f"itr{random_id('', 14)}/{next_id}"
                self._offsets[token] = (base, table, start + page_size)
                body["offset"] = token
        return Response.json(200, body)

    def _matches(self, record_id: str, condition: tuple[bool, str, datetime]) -> bool:
        negated, op, at = condition
        modified = self.modified_at[record_id].replace(microsecond=0)
        # Airtable compares at the second: a time within the same second is neither
        # after nor before.
        at = at.replace(microsecond=0)
        result = modified > at if op == "AFTER" else modified < at
        return result != negated

    def _shown(self, record: dict[str, Any], wanted: list[str] | None) -> dict[str, Any]:
        fields = dict(record["fields"])
        if self.last_modified_field:
            fields[self.last_modified_field] = _iso_ms(self.modified_at[record["id"]])
        if wanted:
            fields = {k: v for k, v in fields.items() if k in wanted}
        return {**record, "fields": fields}

    def _touch(self, record_id: str) -> None:
        self.modified_at[record_id] = datetime.now(UTC)

    # -- direct access for tests and benches (no HTTP, no rate limit) ------------------

    def seed(
        self,
        base: str,
        table: str,
        rows: list[dict[str, Any]],
        modified: datetime | None = None,
    ) -> list[str]:
        """Store ``rows`` (each a fields dict) as new records, last modified at
        ``modified`` (default now); returns their ids."""
        ids = []
        at = modified or datetime.now(UTC)
        with self.lock:
            records = self._table(base, table)
            created = _iso_ms(at)
            for fields in rows:
                record_id = random_id("rec", 14)
                records[record_id] = {
                    "id": record_id,
                    "createdTime": created,
                    "fields": _clean(fields),
                }
                self.modified_at[record_id] = at
                ids.append(record_id)
        return ids

    def change(self, base: str, table: str, record_id: str, fields: dict[str, Any]) -> None:
        """Edit one record's fields (merged), as a user would in Airtable."""
        with self.lock:
            record = self._table(base, table)[record_id]
            self._apply(record, fields, replace=False)
            self._touch(record_id)

    def remove(self, base: str, table: str, record_id: str) -> None:
        with self.lock:
            del self._table(base, table)[record_id]
            self.modified_at.pop(record_id, None)

    def _get(self, request: Request, base: str, table: str, record_id: str) -> Response:
        with self.lock:
            record = self._table(base, table).get(record_id)
            if record is None:
                return self._no_record(record_id)
            return Response.json(200, self._shown(record, None))

    @staticmethod
    def _no_record(record_id: str) -> Response:
        return _error(404, "NOT_FOUND", f'Could not find a record with ID "{record_id}".')

    def _create(self, request: Request, base: str, table: str) -> Response:
        body = self._json_object(request)
        if body is None:
            return _error(422, "INVALID_REQUEST_UNKNOWN", "Invalid request: body is not JSON")
        batch = "records" in body
        items = body["records"] if batch else [body]
        if not isinstance(items, list) or not items or len(items) > MAX_RECORDS_PER_WRITE:
            return _error(
                422,
                "INVALID_RECORDS",
                f"You can create between 1 and {MAX_RECORDS_PER_WRITE} records per request",
            )
        if not all(
            isinstance(item, dict) and isinstance(item.get("fields"), dict) for item in items
        ):
            return _error(422, "INVALID_RECORDS", 'Each record needs a "fields" object')
        created = []
        with self.lock:
            rows = self._table(base, table)
            for item in items:
                record = {
                    "id": random_id("rec", 14),
                    "createdTime": _now(),
                    "fields": _clean(item["fields"]),
                }
                rows[record["id"]] = record
                self._touch(record["id"])
                created.append(self._shown(record, None))
        return Response.json(200, {"records": created} if batch else created[0])

    def _update_one(self, request: Request, base: str, table: str, record_id: str) -> Response:
        body = self._json_object(request)
        if body is None or not isinstance(body.get("fields"), dict):
            return _error(422, "INVALID_REQUEST_UNKNOWN", 'Invalid request: "fields" missing')
        with self.lock:
            record = self._table(base, table).get(record_id)
            if record is None:
                return self._no_record(record_id)
            self._apply(record, body["fields"], replace=request.method == "PUT")
            self._touch(record_id)
            return Response.json(200, self._shown(record, None))

    def _update_many(self, request: Request, base: str, table: str) -> Response:
        body = self._json_object(request)
        items = (body or {}).get("records")
        if not isinstance(items, list) or not items or len(items) > MAX_RECORDS_PER_WRITE:
            return _error(
                422,
                "INVALID_RECORDS",
                f"You can update between 1 and {MAX_RECORDS_PER_WRITE} records per request",
            )
        if (body or {}).get("performUpsert"):
            return _error(422, "INVALID_REQUEST_UNKNOWN", "performUpsert: not in the fake")
        with self.lock:
            rows = self._table(base, table)
            for item in items:
                if not isinstance(item, dict) or item.get("id") not in rows:
                    return self._no_record(str((item or {}).get("id")))
            updated = []
            for item in items:
                record = rows[item["id"]]
                self._apply(record, item.get("fields") or {}, replace=request.method == "PUT")
                self._touch(record["id"])
                updated.append(self._shown(record, None))
        return Response.json(200, {"records": updated})

    @staticmethod
    def _apply(record: dict[str, Any], fields: dict[str, Any], *, replace: bool) -> None:
        merged = dict(fields) if replace else {**record["fields"], **fields}
        record["fields"] = _clean(merged)

    def _delete(self, request: Request, base: str, table: str, record_id: str) -> Response:
        with self.lock:
            if self._table(base, table).pop(record_id, None) is None:
                return self._no_record(record_id)
            self.modified_at.pop(record_id, None)
        return Response.json(200, {"deleted": True, "id": record_id})

    @staticmethod
    def _json_object(request: Request) -> dict[str, Any] | None:
        try:
            body = request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            return None
        return body if isinstance(body, dict) else None


@contextlib.contextmanager
def serve(port: int = 0, **options: Any) -> Iterator[AirtableFake]:
    """A running :class:`AirtableFake` (on any free port by default) for the ``with`` block."""
    with AirtableFake(**options).start(port) as fake:
        yield fake
