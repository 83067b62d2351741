"""The sync: records from a source into a target through the record map (docs/datasync.md).

A run reads the source page by page. Each page is applied in one transaction together
with the run's counters and its checkpoint (where the next page starts), so a run killed
at any point resumes after the last committed page, and a page is either written whole
or not at all: no record is written twice. For each record:

- unknown: create our row (or link the row with the same natural key);
- known, its hash unchanged: nothing (no write);
- changed at the source only: update our row;
- changed on both sides since the last sync: a conflict, settled by the source's policy
  (source wins, local wins, newest wins) or held for review (manual);
- invalid: a RecordError with the reason per field; the run goes on.

Full runs then retire the records the source no longer has; runs of a source with
outbound fields push the fields our side owns that changed since they were last pushed.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from collections import Counter
from collections.abc import Callable
from typing import Any

from django.db import models, transaction
from django.db.models import F, Q
from django.utils import timezone

from datasync.models import (
    ConflictPolicy,
    ConflictStatus,
    RecordError,
    RecordMap,
    RunStatus,
    SourceKind,
    SyncConflict,
    SyncMode,
    SyncRun,
    SyncSource,
)
from datasync.sources import ExternalRecord, OffsetExpired, Page, Reader, reader_for
from datasync.targets import TARGETS, Target, Values, digest, target_for
from queueing import Job, JobCancelled, JobStatus, PermanentError

logger = logging.getLogger(__name__)

# The next incremental run reads what changed since this run *started* (a record edited
# mid-run on a page already read is caught next time), less this margin for the clock
# difference between the source and us (NTP keeps it well under a second).
WATERMARK_MARGIN = dt.timedelta(seconds=2)
# Retiring deleted records and pushing outbound fields go through the map this many
# rows per transaction.
MAP_BATCH = 500
# How many record errors a run keeps: past this the count still grows, the rows do not.
MAX_ERRORS_PER_RUN = 1000
ACTIVE_JOB = (JobStatus.SCHEDULED, JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.RETRYING)


class SyncError(PermanentError):
    """A sync that cannot run as asked (unknown source, unsupported mode...)."""


def validate_source(source: SyncSource) -> dict[str, list[str]]:
    """What is wrong with a source's declaration, per field (empty: fine)."""
    errors: dict[str, list[str]] = {}
    if source.target not in TARGETS:
        return {"target": [f"one of {', '.join(TARGETS)}"]}
    target = target_for(source.target)
    if not isinstance(source.field_map, dict) or not source.field_map:
        return {"field_map": ["map at least the natural key: {local field: external field}"]}
    unknown = [name for name in source.field_map if name not in target.fields]
    if unknown:
        errors.setdefault("field_map", []).append(
            f"{', '.join(unknown)}: not accepted by {target.name} ({', '.join(target.fields)})"
        )
    from datasync.targets import TRANSFORMS

    for name, spec in source.field_map.items():
        if isinstance(spec, dict):
            if not isinstance(spec.get("from"), str):
                errors.setdefault("field_map", []).append(f"{name}: give 'from'")
            bad = [t for t in spec.get("transforms", []) if t not in TRANSFORMS]
            if bad:
                errors.setdefault("field_map", []).append(
                    f"{name}: unknown transforms {bad}; known: {', '.join(TRANSFORMS)}"
                )
        elif not isinstance(spec, str):
            errors.setdefault("field_map", []).append(f"{name}: an external field name")
    if target.key not in source.field_map:
        errors.setdefault("field_map", []).append(f"map the natural key {target.key!r}")
    missing = target.missing_for_create(source.field_map, source.config.get("defaults", {}))
    if missing:
        errors.setdefault("field_map", []).append(
            f"{target.name} rows need {', '.join(missing)}: map them or set config.defaults"
        )
    outbound = source.outbound_map or {}
    not_owned = [name for name in outbound if name not in target.owned]
    if not_owned:
        errors.setdefault("outbound_map", []).append(
            f"{', '.join(not_owned)}: our side owns only {', '.join(target.owned) or 'nothing'}"
        )
    if outbound and source.kind == SourceKind.CSV:
        errors.setdefault("outbound_map", []).append("a CSV source is read-only")
    return errors


@dataclasses.dataclass
class Context:
    """What applying records needs to know; ``run`` None: a webhook's single record."""

    source: SyncSource
    target: Target
    run: SyncRun | None
    dry_run: bool = False
    full: bool = False


def _policy_says_source(ctx: Context, record: ExternalRecord, obj: models.Model) -> bool | None:
    """True: apply the source's values; False: keep ours; None: hold for review."""
    policy = ctx.source.conflict_policy
    if policy == ConflictPolicy.SOURCE_WINS:
        return True
    if policy == ConflictPolicy.LOCAL_WINS:
        return False
    if policy == ConflictPolicy.NEWEST_WINS:
        local = ctx.target.modified_at(obj)
        if record.modified is None or local is None:
            return None  # no time on one side: someone decides
        return record.modified >= local
    return None


def _hold_conflict(ctx: Context, mapping: RecordMap, values: Values, current: Values) -> None:
    held = SyncConflict.objects.filter(record=mapping, status=ConflictStatus.OPEN)
    if not held.update(source_values=values, local_values=current, source_hash=digest(values)):
        SyncConflict.objects.create(
            source=ctx.source,
            record=mapping,
            run=ctx.run,
            source_values=values,
            local_values=current,
            source_hash=digest(values),
        )


@dataclasses.dataclass
class Batch:
    """One batch's plan: what to create, update and record, before anything is written."""

    counts: Counter[str]
    errors: list[RecordError] = dataclasses.field(default_factory=list)
    bad: set[str] = dataclasses.field(default_factory=set)  # invalid external ids
    creates: list[tuple[ExternalRecord, Values]] = dataclasses.field(default_factory=list)
    updates: list[tuple[models.Model, Values]] = dataclasses.field(default_factory=list)
    new_maps: list[RecordMap] = dataclasses.field(default_factory=list)
    touched: list[RecordMap] = dataclasses.field(default_factory=list)

    def invalid(self, ctx: Context, record: ExternalRecord, problems: dict[str, list[str]]) -> None:
        self.errors.append(_error(ctx, record, problems))
        self.bad.add(record.id)


def _parse(
    ctx: Context, records: list[ExternalRecord], batch: Batch
) -> list[tuple[ExternalRecord, Values]]:
    """The valid records with their canonical values; the others reported in ``batch``."""
    parsed: list[tuple[ExternalRecord, Values]] = []
    ids_seen: set[str] = set()
    for record in records:
        if record.deleted:
            continue
        if record.id in ids_seen:
            batch.invalid(ctx, record, {"id": [f"{record.id} appears twice in a batch"]})
            continue
        ids_seen.add(record.id)
        values, problems = ctx.target.parse(ctx.source.field_map, record.fields)
        if problems:
            batch.invalid(ctx, record, problems)
        else:
            parsed.append((record, values))
    for position, problems in ctx.target.check_references([v for _, v in parsed]).items():
        batch.invalid(ctx, parsed[position][0], problems)
    return [(r, v) for r, v in parsed if r.id not in batch.bad]


def _decide(
    ctx: Context,
    batch: Batch,
    record: ExternalRecord,
    values: Values,
    mapping: RecordMap,
    obj: models.Model | None,
) -> None:
    """Plan one valid record against our row (None: we have none) and its map."""
    counts, target = batch.counts, ctx.target
    source_hash = digest(values)
    if obj is None:
        refused = target.check_write(None, values)
        if refused:
            batch.invalid(ctx, record, refused)  # its new map is not kept (_write)
            return
        batch.creates.append((record, values))
        mapping.source_hash = mapping.local_hash = source_hash
        return
    mapping.local_id = obj.pk
    current = target.local_values(obj, list(ctx.source.field_map))
    if current == values:
        counts["unchanged"] += 1
        mapping.source_hash = mapping.local_hash = source_hash
        return
    local_hash = digest(current)
    first_link = not mapping.source_hash
    if not first_link and mapping.source_hash == source_hash:
        counts["unchanged"] += 1  # only ours changed: nothing to take from the source
        return
    refused = target.check_write(obj, values)
    if refused:
        batch.invalid(ctx, record, refused)  # ours stays as it is; reported every run
        return
    take = not (first_link and ctx.source.conflict_policy == ConflictPolicy.LOCAL_WINS)
    if not first_link and mapping.local_hash != local_hash:
        counts["conflicts"] += 1
        decision = _policy_says_source(ctx, record, obj)
        if decision is None:
            if not ctx.dry_run:
                _hold_conflict(ctx, mapping, values, current)
            return
        take = decision
    if take:
        batch.updates.append((obj, values))
        mapping.source_hash = mapping.local_hash = source_hash
        mapping.writes += 1
        counts["updated"] += 1
    else:
        mapping.source_hash, mapping.local_hash = source_hash, local_hash
        counts["unchanged"] += 1


def apply_records(ctx: Context, records: list[ExternalRecord]) -> Counter[str]:
    """Apply one batch of records (call inside a transaction); returns the counts."""
    batch = Batch(Counter(read=len(records)))
    source, target = ctx.source, ctx.target
    maps = {
        m.external_id: m
        for m in RecordMap.objects.select_for_update().filter(
            source=source, external_id__in=[r.id for r in records]
        )
    }
    before = {m.id: _map_state(m) for m in maps.values()}
    gone = [maps[r.id] for r in records if r.deleted and r.id in maps]
    batch.counts["deleted"] += retire(gone, ctx)
    parsed = _parse(ctx, records, batch)

    by_pk = target.load(m.local_id for m in maps.values() if m.local_id)
    unmapped = [v[target.key] for r, v in parsed if r.id not in maps or not maps[r.id].local_id]
    by_key = target.load_by_keys(unmapped) if unmapped else {}
    # Our rows another record of this source is already synced to (same natural key).
    claimed = dict(
        RecordMap.objects.filter(
            source=source, deleted_at=None, local_id__in=[o.pk for o in by_key.values()]
        ).values_list("local_id", "external_id")
    )
    planned: dict[str, str] = {}  # natural key -> the record creating it in this batch
    now = timezone.now()
    for record, parsed_values in parsed:
        key = str(parsed_values[target.key])
        mapping = maps.get(record.id)
        obj = by_pk.get(mapping.local_id) if mapping and mapping.local_id else None
        if obj is None:
            obj = by_key.get(key)
            owner = claimed.get(obj.pk) if obj is not None else planned.get(key)
            if owner is not None and owner != record.id:
                problem = {target.key: [f"{key!r} is already synced from record {owner}"]}
                batch.invalid(ctx, record, problem)
                continue
            if obj is None:
                planned[key] = record.id
        if mapping is None:
            mapping = RecordMap(source=source, external_id=record.id)
            batch.new_maps.append(mapping)
        else:
            batch.touched.append(mapping)
        mapping.natural_key = key[:255]
        mapping.remote_modified = record.modified
        mapping.synced_at = now
        if ctx.full and ctx.run is not None:
            mapping.last_seen_run = ctx.run.id
        values = parsed_values
        if mapping.deleted_at is not None and target.retire_field:
            values = {**values, target.retire_field: True}  # back at the source
        mapping.deleted_at = None
        _decide(ctx, batch, record, values, mapping, obj)
    batch.counts["created"] += len(batch.creates)
    batch.counts["invalid"] += len(batch.errors)
    if batch.errors:
        _store_errors(ctx, batch.errors)  # a dry run's report too
    if not ctx.dry_run:
        _write(ctx, batch, before, now)
    return batch.counts


def _map_state(mapping: RecordMap) -> tuple[Any, ...]:
    """What a map row says about its record (not when it was last seen)."""
    return tuple(
        getattr(mapping, name) for name in MAP_FIELDS if name not in ("synced_at", "last_seen_run")
    )


def _write(
    ctx: Context, batch: Batch, before: dict[int, tuple[Any, ...]], now: dt.datetime
) -> None:
    if batch.creates:
        rows = ctx.target.create(
            [v for _, v in batch.creates], ctx.source.config.get("defaults", {})
        )
        maps_by_id = {m.external_id: m for m in [*batch.new_maps, *batch.touched]}
        outbound = list(ctx.source.outbound_map or {})
        for (record, _), row in zip(batch.creates, rows, strict=True):
            mapping = maps_by_id[record.id]
            mapping.local_id = row.pk
            mapping.writes += 1
            if outbound:
                # A row made from the source has our defaults in the fields we own:
                # nothing to push until we change them.
                mapping.outbound_hash = digest(ctx.target.local_values(row, outbound))
    ctx.target.update(batch.updates)
    RecordMap.objects.bulk_create([m for m in batch.new_maps if m.external_id not in batch.bad])
    # A bulk UPDATE of many columns is a CASE per column: only for the maps whose record
    # changed. The unchanged ones (most, in a full run) are marked seen in one statement.
    changed = [m for m in batch.touched if _map_state(m) != before[m.id]]
    RecordMap.objects.bulk_update(changed, MAP_FIELDS)
    seen = Q(id__in=[m.id for m in batch.touched if _map_state(m) == before[m.id]])
    if ctx.full and ctx.run is not None and batch.bad:
        # Invalid records still exist at the source: not deletions.
        seen |= Q(source=ctx.source, external_id__in=batch.bad)
    marks: dict[str, Any] = {"synced_at": now}
    if ctx.full and ctx.run is not None:
        marks["last_seen_run"] = ctx.run.id
    RecordMap.objects.filter(seen).update(**marks)


MAP_FIELDS = [
    "local_id",
    "outbound_hash",
    "natural_key",
    "source_hash",
    "local_hash",
    "remote_modified",
    "synced_at",
    "last_seen_run",
    "deleted_at",
    "writes",
]


def _error(ctx: Context, record: ExternalRecord, problems: dict[str, list[str]]) -> RecordError:
    return RecordError(
        run=ctx.run,
        source=ctx.source,
        external_id=record.id,
        reason=problems,
        values={k: v for k, v in record.fields.items() if isinstance(k, str)},
    )


def _store_errors(ctx: Context, errors: list[RecordError]) -> None:
    if ctx.run is not None:
        kept = RecordError.objects.filter(run=ctx.run).count()
        errors = errors[: max(0, MAX_ERRORS_PER_RUN - kept)]
    RecordError.objects.bulk_create(errors)


def retire(maps: list[RecordMap], ctx: Context) -> int:
    """Our side of records deleted at the source; returns how many."""
    live = [m for m in maps if m.deleted_at is None]
    if not live or ctx.dry_run:
        return len(live)
    rows = ctx.target.load(m.local_id for m in live if m.local_id)
    ctx.target.retire(list(rows.values()))
    RecordMap.objects.filter(id__in=[m.id for m in live]).update(deleted_at=timezone.now())
    return len(live)


# --- runs --------------------------------------------------------------------------------


def _start(source: SyncSource, mode: str, dry_run: bool, job_id: Any) -> SyncRun:
    """This job's unfinished run of the source (a retry resumes it), else a new run.
    A running run whose job ended (dead, cancelled) is abandoned first."""
    with transaction.atomic():
        SyncSource.objects.select_for_update().filter(id=source.id).first()
        running = SyncRun.objects.filter(source=source, status=RunStatus.RUNNING).first()
        if running is not None:
            if job_id is not None and running.job_id == job_id:
                return running
            job_alive = (
                running.job_id is not None
                and Job.objects.filter(id=running.job_id, status__in=ACTIVE_JOB).exists()
            )
            if job_alive:
                raise SyncError(f"a run of {source.name} is in progress (job {running.job_id})")
            SyncRun.objects.filter(id=running.id).update(
                status=RunStatus.ABANDONED, finished_at=timezone.now()
            )
        return SyncRun.objects.create(
            source=source,
            mode=mode,
            dry_run=dry_run,
            job_id=job_id,
            since=source.watermark if mode == SyncMode.INCREMENTAL else None,
            checkpoint={"phase": "inbound", "position": None, "pages": 0},
        )


def _commit(
    run: SyncRun,
    counts: Counter[str],
    checkpoint: dict[str, Any],
    newest: dt.datetime | None = None,
) -> None:
    """Counters and checkpoint of a run, in the caller's transaction."""
    changes: dict[str, Any] = {name: F(name) + n for name, n in counts.items() if n}
    changes["checkpoint"] = checkpoint
    if newest is not None and (run.newest_change is None or newest > run.newest_change):
        changes["newest_change"] = run.newest_change = newest
    SyncRun.objects.filter(id=run.id).update(**changes)
    run.checkpoint = checkpoint


LeaseCheck = Callable[[], None]


def _noop() -> None:
    return None


class Runner:
    """One run from its checkpoint to the end (see the module docstring)."""

    def __init__(
        self,
        run: SyncRun,
        lease_check: LeaseCheck = _noop,
        cancelled: Callable[[], bool] = lambda: False,
    ) -> None:
        self.run = run
        self.source = run.source
        self.target = target_for(self.source.target)
        self.reader: Reader = reader_for(self.source)
        self.lease_check = lease_check
        self.cancelled = cancelled
        self.ctx = Context(
            self.source,
            self.target,
            run,
            dry_run=run.dry_run,
            full=run.mode == SyncMode.FULL,
        )
        self.seen: set[str] = set()  # dry runs only: they write no map

    def execute(self) -> SyncRun:
        if self.run.dry_run:
            # A dry run writes nothing to resume from: it starts over.
            self.run.checkpoint = {"phase": "inbound", "position": None, "pages": 0}
            SyncRun.objects.filter(id=self.run.id).update(
                checkpoint=self.run.checkpoint, **dict.fromkeys(SyncRun.COUNTS, 0)
            )
        phase = self.run.checkpoint.get("phase", "inbound")
        if phase == "inbound":
            self._inbound()
            phase = self.run.checkpoint["phase"]
        if phase == "deletions":
            self._deletions()
            phase = self.run.checkpoint["phase"]
        if phase == "outbound":
            self._outbound()
        return self._finish()

    def _next_phase(self, after: str) -> str:
        order = ["inbound", "deletions", "outbound", "done"]
        for phase in order[order.index(after) + 1 :]:
            if phase == "deletions" and self.run.mode == SyncMode.FULL:
                return phase
            if phase == "outbound" and self.source.outbound_map and not self.run.dry_run:
                return phase
            if phase == "done":
                return phase
        return "done"

    def _read(self, position: str | None) -> Page:
        mode = self.run.mode
        size = max(1, self.source.batch_size)
        if mode == SyncMode.DELTA:
            if not self.reader.supports_delta:
                raise SyncError(f"{self.source.name} has no change feed: use full or incremental")
            return self.reader.changes(position or self.source.delta_cursor or None, size)
        since = self.run.since if mode == SyncMode.INCREMENTAL else None
        return self.reader.page(position, since, size)

    def _inbound(self) -> None:
        checkpoint = self.run.checkpoint
        position = checkpoint.get("position")
        restarted = False
        while True:
            if self.cancelled():
                raise JobCancelled(f"sync run {self.run.id} cancelled")
            try:
                page = self._read(position)
            except OffsetExpired:
                if restarted:
                    raise
                logger.info("sync run %s: page offset expired, reading again", self.run.id)
                position, restarted = None, True
                continue
            delta = self.run.mode == SyncMode.DELTA
            last = not page.records if delta else page.next_position is None
            newest = max((r.modified for r in page.records if r.modified), default=None)
            if self.run.dry_run:
                self.seen.update(r.id for r in page.records)
            with transaction.atomic():
                self.lease_check()
                counts = apply_records(self.ctx, page.records) if page.records else Counter()
                checkpoint = {
                    "phase": self._next_phase("inbound") if last else "inbound",
                    "position": page.next_position,
                    "pages": int(self.run.checkpoint.get("pages", 0)) + 1,
                }
                _commit(self.run, counts, checkpoint, newest)
                if delta and not self.run.dry_run and page.next_position:
                    SyncSource.objects.filter(id=self.source.id).update(
                        delta_cursor=page.next_position
                    )
            if last:
                return
            position = page.next_position

    def _deletions(self) -> None:
        """Records the source no longer has (a full read did not see them)."""
        base = RecordMap.objects.filter(source=self.source, deleted_at=None).order_by("id")
        if self.run.dry_run:
            missing = [m for m in base.iterator() if m.external_id not in self.seen]
            with transaction.atomic():
                _commit(
                    self.run,
                    Counter(deleted=len(missing)),
                    {**self.run.checkpoint, "phase": self._next_phase("deletions")},
                )
            return
        unseen = base.filter(
            ~Q(last_seen_run=self.run.id) | Q(last_seen_run__isnull=True),
            # Touched since the run began (a webhook's record created at the source after
            # the read passed its page): not a deletion.
            synced_at__lt=self.run.started_at,
        )
        while True:
            with transaction.atomic():
                self.lease_check()
                batch = list(unseen.select_for_update()[:MAP_BATCH])
                done = len(batch) < MAP_BATCH
                deleted = retire(batch, self.ctx)
                phase = self._next_phase("deletions") if done else "deletions"
                _commit(self.run, Counter(deleted=deleted), {**self.run.checkpoint, "phase": phase})
            if done:
                return

    def _outbound(self) -> None:
        """Push the fields our side owns that changed since they were last pushed."""
        outbound = self.source.outbound_map
        names = list(outbound)
        after = int(self.run.checkpoint.get("after_map") or 0)
        maps = RecordMap.objects.filter(
            source=self.source, deleted_at=None, local_id__isnull=False
        ).order_by("id")
        while True:
            batch = list(maps.filter(id__gt=after)[:MAP_BATCH])
            if not batch:
                break
            rows = self.target.load(m.local_id for m in batch if m.local_id)
            pending: list[tuple[RecordMap, str, Values]] = []
            for mapping in batch:
                row = rows.get(mapping.local_id or 0)
                if row is None:
                    continue
                values = self.target.local_values(row, names)
                hashed = digest(values)
                if hashed != mapping.outbound_hash:
                    pending.append((mapping, hashed, values))
            self.reader.push(
                [
                    (m.external_id, {outbound[name]: value for name, value in values.items()})
                    for m, _, values in pending
                ]
            )
            after = batch[-1].id
            with transaction.atomic():
                self.lease_check()
                for mapping, hashed, _ in pending:
                    RecordMap.objects.filter(id=mapping.id).update(outbound_hash=hashed)
                _commit(
                    self.run,
                    Counter(pushed=len(pending)),
                    {**self.run.checkpoint, "phase": "outbound", "after_map": after},
                )
        with transaction.atomic():
            _commit(self.run, Counter(), {**self.run.checkpoint, "phase": "done"})

    def _finish(self) -> SyncRun:
        run = SyncRun.objects.get(id=self.run.id)
        with transaction.atomic():
            self.lease_check()
            if not run.dry_run and run.mode in (SyncMode.FULL, SyncMode.INCREMENTAL):
                mark = run.started_at - WATERMARK_MARGIN
                watermark = self.source.watermark
                if watermark is None or mark > watermark:
                    SyncSource.objects.filter(id=self.source.id).update(watermark=mark)
            SyncRun.objects.filter(id=run.id).update(
                status=RunStatus.SUCCEEDED, finished_at=timezone.now()
            )
        run.refresh_from_db()
        logger.info("sync run %s of %s: %s", run.id, self.source.name, run.counts())
        return run


def sync(
    source_name: str,
    mode: str = SyncMode.INCREMENTAL,
    *,
    dry_run: bool = False,
    job_id: Any = None,
    lease_check: LeaseCheck = _noop,
    cancelled: Callable[[], bool] = lambda: False,
) -> SyncRun:
    """Run (or resume, for the same job) a sync of one source; returns the finished run.
    Exceptions propagate (the job retries and resumes); a permanent one fails the run."""
    source = SyncSource.objects.filter(name=source_name).first()
    if source is None:
        raise SyncError(f"no sync source {source_name!r}")
    if mode not in SyncMode.values:
        raise SyncError(f"mode {mode!r}: one of {', '.join(SyncMode.values)}")
    problems = validate_source(source)
    if problems:
        raise SyncError(f"source {source.name} is misdeclared: {problems}")
    run = _start(source, mode, dry_run, job_id)
    runner: Runner | None = None
    try:
        runner = Runner(run, lease_check, cancelled)
        return runner.execute()
    except (PermanentError, JobCancelled) as exc:
        SyncRun.objects.filter(id=run.id).update(
            status=RunStatus.FAILED, finished_at=timezone.now(), error=repr(exc)[:2000]
        )
        raise
    except Exception as exc:
        # The job retries and resumes this run; the error shows meanwhile.
        SyncRun.objects.filter(id=run.id).update(error=repr(exc)[:2000])
        raise
    finally:
        if runner is not None:
            runner.reader.close()


# --- single records (webhooks) and conflict resolution ------------------------------------


def upsert_one(source: SyncSource, external_id: str) -> dict[str, int]:
    """Read one record from the source and apply it (deleted when the source has it no
    more): the delta path of a webhook, through the same record-map code."""
    target = target_for(source.target)
    reader = reader_for(source)
    try:
        record = reader.fetch(external_id)
    finally:
        reader.close()
    if record is None:
        record = ExternalRecord(external_id, {}, deleted=True)
    ctx = Context(source, target, None)
    with transaction.atomic():
        counts = apply_records(ctx, [record])
    return dict(counts)


def resolve(conflict: SyncConflict, keep: str, user: str = "") -> SyncConflict:
    """Settle a held conflict: ``keep`` "source" writes the source's version to our row,
    "local" keeps ours (and marks the source's version as seen, so the next sync does not
    raise it again). Outbound fields are pushed by the next run as usual."""
    if keep not in ("source", "local"):
        raise ValueError('keep "source" or "local"')
    with transaction.atomic():
        conflict = (
            SyncConflict.objects.select_for_update()
            .select_related("record", "source")
            .get(id=conflict.id)
        )
        if conflict.status != ConflictStatus.OPEN:
            return conflict
        mapping, source = conflict.record, conflict.source
        target = target_for(source.target)
        row = target.load([mapping.local_id or 0]).get(mapping.local_id or 0)
        if keep == "source":
            if row is not None:
                refused = target.check_write(row, conflict.source_values)
                if refused:  # our row may not change any more (say, an invoiced event)
                    raise SyncError(f"the source's version cannot be written: {refused}")
                target.update([(row, conflict.source_values)])
            mapping.source_hash = mapping.local_hash = conflict.source_hash
            mapping.writes += 1
        else:
            mapping.source_hash = conflict.source_hash
            current = target.local_values(row, source.field_map) if row is not None else {}
            mapping.local_hash = digest(current)
        mapping.save(update_fields=["source_hash", "local_hash", "writes"])
        conflict.status = ConflictStatus.SOURCE if keep == "source" else ConflictStatus.LOCAL
        conflict.resolved_at = timezone.now()
        conflict.resolved_by = user[:150]
        conflict.save(update_fields=["status", "resolved_at", "resolved_by"])
    return conflict
