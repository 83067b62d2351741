"""Fake generic REST JSON API: the shape a partner's records API usually has, for the
data sync's REST source (datasync/sources.py, docs/datasync.md).

- ``GET /api/v1/{collection}``: ``{"data": [...], "next_cursor": "..."}`` pages in id
  order. Cursor pagination (``cursor``, ``limit`` up to 500) or page pagination
  (``page`` from 1, ``per_page``; the answer also carries ``page`` and ``pages``).
  ``updated_after=<ISO time>`` keeps records changed strictly after it, and
  ``If-Modified-Since`` (an HTTP date) answers ``304 Not Modified`` when nothing changed
  since then.
- ``GET /api/v1/{collection}/{id}``: one record, 404 ``{"error": ...}`` when absent.
- ``PATCH /api/v1/{collection}/{id}``: merge fields into a record.
- ``GET /api/v1/{collection}/changes?cursor=<seq>&limit=``: the change feed, oldest first:
  ``{"changes": [{"seq", "op": "upsert"|"delete", "id", "record"}], "next_cursor"}``.
- Records: ``{"id": "...", "updated_at": "...Z", ...fields}``; ``Authorization: Bearer``
  required (401). Faults, latency and the request record come from base.py.

Direct access for tests: ``fake.seed(collection, rows)``, ``fake.change(...)``,
``fake.remove(...)``.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

from devstack.fakes.base import DEFAULT_HANG_SECONDS, FakeProvider, Handler, Request, Response

DEFAULT_PORT = 12116
DEFAULT_LIMIT = 100
MAX_LIMIT = 500


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _error(status: int, message: str) -> Response:
    return Response.json(status, {"error": message})


class RestApiFake(FakeProvider):
    name = "restapi"
    default_port = DEFAULT_PORT

    def __init__(self, *, hang_seconds: float = DEFAULT_HANG_SECONDS) -> None:
        super().__init__(hang_seconds=hang_seconds)
        self.reset_data()

    def reset_data(self) -> None:
        # collection → id → record (with "updated_at" as a datetime)
        self.collections: dict[str, dict[str, dict[str, Any]]] = {}
        self.changes: dict[str, list[dict[str, Any]]] = {}
        self._next_id = 1

    def routes(self) -> list[tuple[str, str, str, Handler]]:
        collection = r"/api/v1/(?P<collection>[a-z][-a-z0-9_]*)"
        return [
            ("GET", rf"{collection}/changes", "changes.list", self._authorised(self._changes)),
            ("GET", collection, "records.list", self._authorised(self._list)),
            (
                "GET",
                rf"{collection}/(?P<record_id>[^/]+)",
                "records.get",
                self._authorised(self._get),
            ),
            (
                "PATCH",
                rf"{collection}/(?P<record_id>[^/]+)",
                "records.update",
                self._authorised(self._update),
            ),
        ]

    def _authorised(self, handler: Handler) -> Handler:
        def check(request: Request, **groups: str) -> Response:
            auth = request.header("Authorization") or ""
            if not auth.startswith("Bearer ") or not auth[7:].strip():
                return _error(401, "authentication required")
            return handler(request, **groups)

        return check

    # -- direct access ------------------------------------------------------------------

    def seed(
        self, collection: str, rows: list[dict[str, Any]], modified: datetime | None = None
    ) -> list[str]:
        """Store ``rows`` (last changed at ``modified``, default now); returns their ids."""
        with self.lock:
            ids = []
            for fields in rows:
                record_id = str(fields.get("id") or f"r{self._next_id:07d}")
                self._next_id += 1
                self._store(collection, record_id, {k: v for k, v in fields.items() if k != "id"})
                if modified is not None:
                    self.collections[collection][record_id]["updated_at"] = modified
                ids.append(record_id)
        return ids

    def change(self, collection: str, record_id: str, fields: dict[str, Any]) -> None:
        with self.lock:
            record = self.collections[collection][record_id]
            merged = {k: v for k, v in record.items() if k not in ("id", "updated_at")}
            self._store(collection, record_id, {**merged, **fields})

    def remove(self, collection: str, record_id: str) -> None:
        with self.lock:
            del self.collections[collection][record_id]
            feed = self.changes.setdefault(collection, [])
            feed.append({"seq": len(feed) + 1, "op": "delete", "id": record_id})

    def _store(self, collection: str, record_id: str, fields: dict[str, Any]) -> None:
        record = {"id": record_id, **fields, "updated_at": datetime.now(UTC)}
        self.collections.setdefault(collection, {})[record_id] = record
        feed = self.changes.setdefault(collection, [])
        feed.append({"seq": len(feed) + 1, "op": "upsert", "id": record_id})

    @staticmethod
    def _shown(record: dict[str, Any]) -> dict[str, Any]:
        return {**record, "updated_at": _iso(record["updated_at"])}

    # -- endpoints ----------------------------------------------------------------------

    def _list(self, request: Request, collection: str) -> Response:
        query = {key: values[0] for key, values in request.query.items() if values}
        try:
            after = (
                datetime.fromisoformat(query["updated_after"].replace("Z", "+00:00"))
                if query.get("updated_after")
                else None
            )
            since = (
                parsedate_to_datetime(request.header("If-Modified-Since") or "")
                if request.header("If-Modified-Since")
                else None
            )
            limit = min(
                int(query.get("limit") or query.get("per_page") or DEFAULT_LIMIT), MAX_LIMIT
            )
            page = int(query["page"]) if query.get("page") else None
        except (ValueError, TypeError) as exc:
            return _error(400, f"bad query: {exc}")
        if limit < 1 or (page is not None and page < 1):
            return _error(400, "limit and page start at 1")
        with self.lock:
            records = sorted(self.collections.get(collection, {}).values(), key=lambda r: r["id"])
            if since is not None and not any(
                r["updated_at"].replace(microsecond=0) > since for r in records
            ):
                return Response(304, b"", {})
            if after is not None:
                records = [r for r in records if r["updated_at"] > after]
            if page is not None:
                chunk = records[(page - 1) * limit : page * limit]
                pages = max(1, -(-len(records) // limit))
                return Response.json(
                    200,
                    {"data": [self._shown(r) for r in chunk], "page": page, "pages": pages},
                )
            cursor = query.get("cursor") or ""
            remaining = [r for r in records if r["id"] > cursor]
            chunk = remaining[:limit]
            more = len(remaining) > limit
            body = {
                "data": [self._shown(r) for r in chunk],
                "next_cursor": chunk[-1]["id"] if more else None,
            }
        return Response.json(200, body)

    def _get(self, request: Request, collection: str, record_id: str) -> Response:
        with self.lock:
            record = self.collections.get(collection, {}).get(record_id)
            if record is None:
                return _error(404, f"no record {record_id}")
            return Response.json(200, self._shown(record))

    def _update(self, request: Request, collection: str, record_id: str) -> Response:
        try:
            fields = request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            fields = None
        if not isinstance(fields, dict):
            return _error(400, "the body is a JSON object of fields")
        with self.lock:
            if record_id not in self.collections.get(collection, {}):
                return _error(404, f"no record {record_id}")
            self.change(collection, record_id, fields)
            return Response.json(200, self._shown(self.collections[collection][record_id]))

    def _changes(self, request: Request, collection: str) -> Response:
        query = {key: values[0] for key, values in request.query.items() if values}
        try:
            cursor = int(query.get("cursor") or 0)
            limit = min(int(query.get("limit") or DEFAULT_LIMIT), MAX_LIMIT)
        except ValueError:
            return _error(400, "cursor and limit are integers")
        with self.lock:
            feed = self.changes.get(collection, [])
            chunk = [dict(c) for c in feed[cursor : cursor + limit]]
            for change in chunk:
                record = self.collections.get(collection, {}).get(change["id"])
                if change["op"] == "upsert" and record is not None:
                    change["record"] = self._shown(record)
            next_cursor = cursor + len(chunk)
        return Response.json(200, {"changes": chunk, "next_cursor": str(next_cursor)})


@contextlib.contextmanager
def serve(port: int = 0, **options: Any) -> Iterator[RestApiFake]:
    """A running :class:`RestApiFake` (on any free port by default) for the ``with`` block."""
    with RestApiFake(**options).start(port) as fake:
        yield fake
