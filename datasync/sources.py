"""Reading and writing the external side of a sync: Airtable, a REST JSON API, CSV.

Each reader answers pages (``page(position, since, size)``) and says where the next one
starts, so a run stores that position with the batch it committed and a killed run
resumes there. Calls to providers go through the platform's guard (``provider_call``):
a 429 halves the shared rate and waits; a wait of a few seconds is taken here, in the
job, a longer one sends the job back to the ledger (ProviderDeferred, no attempt spent)
and the run resumes from its checkpoint. docs/datasync.md.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email.utils import format_datetime
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import httpx
import requests
from django.conf import settings

from datasync.models import SourceKind, SyncSource
from datasync.targets import TARGETS, target_for
from queueing import PermanentError, ProviderDeferred, provider_call

T = TypeVar("T")

AIRTABLE_PROVIDER = "airtable"
REST_PROVIDER = "datasync-rest"
# Airtable's own limits: 100 records per page, 10 per write request.
AIRTABLE_PAGE_SIZE = 100
AIRTABLE_WRITE_SIZE = 10
# A guard wait up to this long is slept through inside the job (the rate's pacing, a
# short 429 cool-down); longer, the job goes back to the ledger and resumes later.
INLINE_WAIT_MAX_SECONDS = 5.0
# Connect and read timeouts of the HTTP clients.
CONNECT_TIMEOUT_SECONDS = 10.0
REST_MAX_PAGE_SIZE = 500
# Development tokens: the local fakes want a bearer token, any token.
DEV_TOKEN = "patTaskyardDevelopmentOnly"  # noqa: S105 - not a secret: DEBUG and fakes only


class OffsetExpired(Exception):
    """The source no longer knows the stored page position: read again from the start."""


class SourceError(PermanentError):
    """A source that cannot be read as configured (no file, no table, bad settings)."""


@dataclass
class ExternalRecord:
    id: str
    fields: dict[str, Any]
    modified: dt.datetime | None = None
    deleted: bool = False


@dataclass
class Page:
    records: list[ExternalRecord] = field(default_factory=list)
    next_position: str | None = None  # None: this was the last page


def guarded(provider: str, call: Callable[[], T]) -> T:
    """``call()`` through the provider guard, sleeping through short waits."""
    while True:
        try:
            with provider_call(provider):
                return call()
        except ProviderDeferred as deferred:
            if deferred.wait > INLINE_WAIT_MAX_SECONDS:
                raise
            time.sleep(max(deferred.wait, 0.01))


def parse_time(value: Any) -> dt.datetime | None:
    if not value:
        return None
    try:
        moment = dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def iso_z(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _token(config: dict[str, Any], default_env: str, url: str) -> str:
    """The bearer token from the environment; a development token for the local fakes."""
    token = os.environ.get(config.get("token_env") or default_env, "")
    local = urlsplit(url).hostname in ("127.0.0.1", "localhost", "::1")
    if not token and (settings.DEBUG or local):
        return DEV_TOKEN
    if not token:
        raise SourceError(f"set {config.get('token_env') or default_env} to read this source")
    return token


class AirtableReader:
    """One Airtable table through pyairtable (its own retries off: the guard decides)."""

    supports_outbound = True
    supports_delta = False  # Airtable changes arrive by webhook, one record at a time

    def __init__(self, source: SyncSource) -> None:
        from pyairtable import Api

        config = source.config
        if not config.get("base") or not config.get("table"):
            raise SourceError(f"source {source.name}: config needs 'base' and 'table'")
        spec = settings.TASKYARD_PROVIDERS[AIRTABLE_PROVIDER]
        endpoint = config.get("endpoint_url") or spec["base_url"]
        self.api = Api(
            _token(config, "AIRTABLE_API_KEY", endpoint),
            endpoint_url=endpoint,
            timeout=(int(CONNECT_TIMEOUT_SECONDS), int(spec.get("timeout", 30))),
            retry_strategy=None,
        )
        self.table = self.api.table(config["base"], config["table"])
        self.modified_field = config.get("modified_field") or ""

    def _record(self, raw: dict[str, Any]) -> ExternalRecord:
        fields = dict(raw.get("fields") or {})
        modified = (
            parse_time(fields.pop(self.modified_field, None)) if self.modified_field else None
        )
        return ExternalRecord(raw["id"], fields, modified)

    def page(self, position: str | None, since: dt.datetime | None, size: int) -> Page:
        options: dict[str, Any] = {"page_size": min(size, AIRTABLE_PAGE_SIZE)}
        if position:
            options["offset"] = position
        if since is not None:
            # At or after the watermark: records of its own second are read again and
            # cost nothing (their hash is unchanged).
            options["formula"] = (
                f"NOT(IS_BEFORE(LAST_MODIFIED_TIME(), DATETIME_PARSE('{iso_z(since)}')))"
            )
        urls = self.table.urls

        def call() -> Any:
            return self.api.request(
                "get", urls.records, fallback=("post", urls.records_post), options=options
            )

        try:
            body = guarded(AIRTABLE_PROVIDER, call)
        except requests.HTTPError as exc:
            response = exc.response
            expired = response is not None and "ITERATOR_NOT_AVAILABLE" in response.text
            if expired and position and response is not None and response.status_code == 422:
                raise OffsetExpired(str(exc)) from None
            raise
        records = [self._record(raw) for raw in body.get("records", [])]
        return Page(records, body.get("offset") or None)

    def fetch(self, external_id: str) -> ExternalRecord | None:
        try:
            raw = guarded(AIRTABLE_PROVIDER, lambda: self.table.get(external_id))
        except requests.HTTPError as exc:
            if exc.response is not None and exc.response.status_code == 404:
                return None
            raise
        return self._record(dict(raw))

    def changes(self, cursor: str | None, size: int) -> Page:
        raise SourceError("Airtable sources take changes by webhook; use full or incremental")

    def close(self) -> None:
        self.api.session.close()

    def push(self, updates: list[tuple[str, dict[str, Any]]]) -> None:
        for start in range(0, len(updates), AIRTABLE_WRITE_SIZE):
            chunk = [
                {"id": external_id, "fields": fields}
                for external_id, fields in updates[start : start + AIRTABLE_WRITE_SIZE]
            ]

            def call(chunk: list[dict[str, Any]] = chunk) -> None:
                self.table.batch_update(chunk)  # type: ignore[arg-type]

            guarded(AIRTABLE_PROVIDER, call)


class RestReader:
    """A JSON records API: cursor or page pagination, an updated-after filter and
    If-Modified-Since, an optional change feed, PATCH for outbound fields."""

    supports_outbound = True

    def __init__(self, source: SyncSource) -> None:
        config = source.config
        base = settings.TASKYARD_PROVIDERS[REST_PROVIDER]["base_url"]
        url = config.get("url") or ""
        if not url:
            raise SourceError(f"source {source.name}: config needs 'url'")
        self.url = url if url.startswith(("http://", "https://")) else f"{base}/{url.lstrip('/')}"
        self.pagination = config.get("pagination", "cursor")
        self.items = config.get("items", "data")
        self.id_field = config.get("id_field", "id")
        self.modified_field = config.get("modified_field", "updated_at")
        self.updated_after = config.get("updated_after_param", "updated_after")
        self.changes_url = config.get("changes_url") or f"{self.url}/changes"
        self.supports_delta = bool(config.get("change_feed", True))
        timeout = float(settings.TASKYARD_PROVIDERS[REST_PROVIDER].get("timeout", 30))
        self.client = httpx.Client(
            headers={"Authorization": f"Bearer {_token(config, 'DATASYNC_REST_TOKEN', self.url)}"},
            timeout=httpx.Timeout(timeout, connect=CONNECT_TIMEOUT_SECONDS),
        )

    def _get(self, url: str, params: dict[str, Any], headers: dict[str, str] | None = None) -> Any:
        def call() -> httpx.Response:
            response = self.client.get(url, params=params, headers=headers or {})
            if response.status_code != 304:
                response.raise_for_status()
            return response

        return guarded(REST_PROVIDER, call)

    def _record(self, raw: dict[str, Any]) -> ExternalRecord:
        fields = dict(raw)
        external_id = str(fields.get(self.id_field, ""))
        return ExternalRecord(external_id, fields, parse_time(fields.get(self.modified_field)))

    def page(self, position: str | None, since: dt.datetime | None, size: int) -> Page:
        size = min(size, REST_MAX_PAGE_SIZE)
        params: dict[str, Any] = {}
        headers: dict[str, str] = {}
        if since is not None:
            params[self.updated_after] = iso_z(since - dt.timedelta(milliseconds=1))
            if not position:
                headers["If-Modified-Since"] = format_datetime(
                    since.astimezone(dt.UTC), usegmt=True
                )
        if self.pagination == "page":
            params.update(page=int(position or 1), per_page=size)
        else:
            params["limit"] = size
            if position:
                params["cursor"] = position
        response = self._get(self.url, params, headers)
        if response.status_code == 304:
            return Page([], None)
        body = response.json()
        records = [self._record(raw) for raw in body.get(self.items, [])]
        if self.pagination == "page":
            page = int(position or 1)
            more = page < int(body.get("pages", page))
            return Page(records, str(page + 1) if more else None)
        return Page(records, body.get("next_cursor") or None)

    def fetch(self, external_id: str) -> ExternalRecord | None:
        try:
            response = self._get(f"{self.url}/{external_id}", {})
        except httpx.HTTPStatusError as exc:
            if exc.response.status_code == 404:
                return None
            raise
        return self._record(response.json())

    def changes(self, cursor: str | None, size: int) -> Page:
        """One page of the change feed from ``cursor``; next_position is the cursor to
        keep (also when the page is empty: the feed's end)."""
        body = self._get(self.changes_url, {"cursor": cursor or "0", "limit": size}).json()
        records = []
        for change in body.get("changes", []):
            if change.get("op") == "delete" or "record" not in change:
                records.append(ExternalRecord(str(change["id"]), {}, deleted=True))
            else:
                records.append(self._record(change["record"]))
        return Page(records, str(body.get("next_cursor") or cursor or "0"))

    def close(self) -> None:
        self.client.close()

    def push(self, updates: list[tuple[str, dict[str, Any]]]) -> None:
        for external_id, fields in updates:

            def call(external_id: str = external_id, fields: dict[str, Any] = fields) -> None:
                self.client.patch(f"{self.url}/{external_id}", json=fields).raise_for_status()

            guarded(REST_PROVIDER, call)


class CsvReader:
    """A CSV uploaded in the admin (kept on the source) or read from ``config.path``.
    The position is the number of data rows already read."""

    supports_outbound = False
    supports_delta = False

    def __init__(self, source: SyncSource) -> None:
        config = source.config
        if source.csv_content:
            self.text = source.csv_content
        elif config.get("path"):
            path = Path(config["path"])
            try:
                self.text = path.read_text(encoding=config.get("encoding", "utf-8-sig"))
            except OSError as exc:
                raise SourceError(f"source {source.name}: cannot read {path}: {exc}") from None
        else:
            raise SourceError(f"source {source.name}: upload a CSV or set config 'path'")
        self.delimiter = config.get("delimiter", ",")
        # The record's id: the named column, else the column mapped to the target's key.
        key = target_for(source.target).key if source.target in TARGETS else ""
        spec = source.field_map.get(key)
        key_column = spec if isinstance(spec, str) else (spec or {}).get("from", "")
        self.id_column = config.get("id_column") or key_column
        self.modified_column = config.get("modified_column") or ""
        self._rows: list[dict[str, str]] | None = None

    def rows(self) -> list[dict[str, str]]:
        if self._rows is None:
            reader = csv.DictReader(
                io.StringIO(self.text.lstrip("\ufeff")), delimiter=self.delimiter
            )
            self._rows = list(reader)
            if self._rows and self.id_column and self.id_column not in self._rows[0]:
                raise SourceError(f"the CSV has no column {self.id_column!r}")
            self._first_line: dict[str, int] = {}
            for number, row in enumerate(self._rows, start=2):
                self._first_line.setdefault(self._id(row), number)
        return self._rows

    def _id(self, row: dict[str, str]) -> str:
        return (row.get(self.id_column) or "").strip() if self.id_column else ""

    def page(self, position: str | None, since: dt.datetime | None, size: int) -> Page:
        start = int(position or 0)
        chunk = self.rows()[start : start + size]
        records = []
        for number, row in enumerate(chunk, start=start + 2):  # line 1 is the header
            external_id = self._id(row)
            if external_id and self._first_line[external_id] != number:
                # A repeated id is another record claiming the same row: reported.
                external_id = f"{external_id} (line {number})"
            modified = parse_time(row.get(self.modified_column)) if self.modified_column else None
            records.append(ExternalRecord(external_id or f"line:{number}", dict(row), modified))
        end = start + len(chunk)
        return Page(records, str(end) if end < len(self.rows()) else None)

    def fetch(self, external_id: str) -> ExternalRecord | None:
        raise SourceError("a CSV source has no single-record read")

    def changes(self, cursor: str | None, size: int) -> Page:
        raise SourceError("a CSV source has no change feed; use full")

    def push(self, updates: list[tuple[str, dict[str, Any]]]) -> None:
        raise SourceError("a CSV source is read-only")

    def close(self) -> None:
        return None


Reader = AirtableReader | RestReader | CsvReader

READERS: dict[str, type[AirtableReader] | type[RestReader] | type[CsvReader]] = {
    SourceKind.AIRTABLE: AirtableReader,
    SourceKind.REST: RestReader,
    SourceKind.CSV: CsvReader,
}


def reader_for(source: SyncSource) -> Reader:
    return READERS[source.kind](source)
