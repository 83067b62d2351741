"""Delta sync by webhook: an Airtable automation (or any sender of the generic HMAC
scheme) posts ``{"type": "record.updated", "source": "<sync source>", "record": {"id":
"rec..."}}`` to /webhooks/airtable/. The record is read back from the source (the
notification says *that* it changed, the source says *how*) and applied through the
same record-map code as a run; a record the source no longer has is a deletion."""

from __future__ import annotations

from typing import Any

from datasync import engine
from datasync.inbound import handles
from datasync.models import SyncSource


@handles("airtable", "record.created", "record.updated", "record.deleted")
def apply_record_change(event: Any) -> dict[str, Any]:
    payload = event.payload if isinstance(event.payload, dict) else {}
    record = payload.get("record")
    record_id = record.get("id") if isinstance(record, dict) else record
    source = SyncSource.objects.filter(name=str(payload.get("source") or ""), enabled=True).first()
    if source is None or not record_id:
        # Kept, not retried: no retry can make an unknown source known.
        return {"skipped": "no enabled sync source or record id in the event"}
    return {"source": source.name, "record": record_id, **engine.upsert_one(source, str(record_id))}
