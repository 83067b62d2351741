"""Jobs of the data sync app (docs/datasync.md, docs/webhooks.md).

datasync.run_sync          one sync run of one source; one at a time per source (unique
                           key); a retry resumes the run from its checkpoint
datasync.sync_sources      the schedules' entry point: a run_sync per scheduled source
datasync.process_webhook   an inbound webhook event through its app's handler
"""

from __future__ import annotations

import uuid
from typing import Any

from rest_framework import serializers

from datasync.models import SyncMode, SyncSource
from queueing import Contract, enqueue, job


class DataSyncArgs(Contract):
    """Sync one source now: full, incremental or delta; a dry run writes no record."""

    # DRF's metaclass takes declared fields off the class: "source" is free to use.
    source = serializers.SlugField(  # type: ignore[assignment]
        max_length=64, help_text="a sync source's name"
    )
    mode = serializers.ChoiceField(
        choices=SyncMode.choices, required=False, help_text="default: incremental"
    )
    dry_run = serializers.BooleanField(
        required=False, help_text="read and compare, count what would change, write nothing"
    )

    def validate_source(self, value: str) -> str:
        source = SyncSource.objects.filter(name=value).first()
        if source is None:
            names = ", ".join(SyncSource.objects.values_list("name", flat=True)[:20])
            raise serializers.ValidationError(f"no sync source {value!r}; known: {names or 'none'}")
        if not source.enabled:
            raise serializers.ValidationError(f"sync source {value!r} is disabled")
        return value


@job(
    queue="datasync",
    name="datasync.run_sync",
    api=DataSyncArgs,
    roles=("manager",),
    unique_key="datasync:{source}",
    # A run resumes from its checkpoint, so retries are cheap; provider waits (429s, an
    # open breaker) defer the job without spending one.
    retry={"max_attempts": 8, "base_delay": 5.0},
    bind=True,
)
def run_sync(
    self: Any, source: str, mode: str = SyncMode.INCREMENTAL, dry_run: bool = False
) -> dict[str, Any]:
    """Run (or resume) a sync of ``source``; returns the run's counts."""
    from datasync import engine

    job_id = uuid.UUID(str(self.job_id)) if self.job_id else None
    run = engine.sync(
        source,
        mode,
        dry_run=dry_run,
        job_id=job_id,
        lease_check=self.assert_lease,
        cancelled=self.is_cancelled,
    )
    return {"run": run.id, "source": source, "mode": mode, "dry_run": dry_run, **run.counts()}


@job(queue="datasync", name="datasync.sync_sources")
def sync_sources(mode: str = SyncMode.INCREMENTAL) -> dict[str, Any]:
    """Enqueue a run of every enabled, scheduled source (a source already running keeps
    its job: the unique key)."""
    names = list(
        SyncSource.objects.filter(enabled=True, scheduled=True).values_list("name", flat=True)
    )
    for name in names:
        enqueue(run_sync, kwargs={"source": name, "mode": mode})
    return {"mode": mode, "sources": names}


@job(queue="external-api", name="datasync.process_webhook", retry={"max_attempts": 8})
def process_webhook(event_id: int) -> dict[str, Any]:
    """Run the registered handler of one stored inbound webhook event."""
    from datasync import services

    return services.process(event_id)
