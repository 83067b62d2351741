"""The audit trail: every mutating API call and operator action, hash-chained.

    record("queue.pause", target=("queue", "billing"), user=request.user, ip=...,
           before={"paused": False}, after={"paused": True}, reason="billing freeze")

Call it inside the transaction that makes the change, so the event and the change commit
together (or neither does). Rows are appended one at a time: on PostgreSQL under a
transaction-level advisory lock, on SQLite under its single writer, so two writers never
chain onto the same previous row.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection, transaction
from django.utils import timezone

from queueing.models import AuditEvent

GENESIS_HASH = "0" * 64
# Any constant shared by all writers: the advisory lock that serialises appends.
_PG_LOCK_ID = 0x7A5C_A0D1


def _canonical(value: Any) -> Any:
    """JSON-safe and stable: what the row will hold after a round trip through the DB."""
    return json.loads(json.dumps(value, cls=DjangoJSONEncoder, sort_keys=True))


def compute_hash(event: AuditEvent) -> str:
    body = {
        "prev": event.prev_hash,
        "at": event.at.astimezone(dt.UTC).isoformat(timespec="microseconds"),
        "actor_id": event.actor_id,
        "actor_name": event.actor_name,
        "role": event.role,
        "ip": event.ip,
        "action": event.action,
        "target_type": event.target_type,
        "target_id": event.target_id,
        "before": event.before,
        "after": event.after,
        "reason": event.reason,
    }
    payload = json.dumps(body, sort_keys=True, separators=(",", ":"), cls=DjangoJSONEncoder)
    return hashlib.sha256(payload.encode()).hexdigest()


def role_of(user) -> str:
    if user is None or not getattr(user, "is_authenticated", False):
        return ""
    if user.is_superuser:
        return "superuser"
    return ",".join(sorted(user.groups.values_list("name", flat=True)))


def record(
    action: str,
    *,
    target: tuple[str, Any] = ("", ""),
    user=None,
    ip: str | None = None,
    before: Any = None,
    after: Any = None,
    reason: str = "",
) -> AuditEvent:
    """Append one event to the chain (in the caller's transaction, if any)."""
    authenticated = user is not None and getattr(user, "is_authenticated", False)
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_PG_LOCK_ID])
        last = AuditEvent.objects.order_by("-id").values_list("hash", flat=True).first()
        event = AuditEvent(
            # Microseconds are what both databases keep: the hash must survive a reload.
            at=timezone.now(),
            actor=user if authenticated else None,
            actor_name=user.get_username() if authenticated else "",
            role=role_of(user),
            ip=ip,
            action=action,
            target_type=str(target[0]),
            target_id=str(target[1]),
            before=_canonical(before),
            after=_canonical(after),
            reason=reason or "",
            prev_hash=last or GENESIS_HASH,
        )
        event.hash = compute_hash(event)
        event.save(force_insert=True)
    return event


def record_request(request, action: str, target: tuple[str, Any], **fields) -> AuditEvent:
    """record() for an HTTP request (API or admin): its user and peer address. The
    address is REMOTE_ADDR; a proxy in front must set it (its own middleware)."""
    ip = request.META.get("REMOTE_ADDR") or None
    return record(action, target=target, user=request.user, ip=ip, **fields)


@dataclass(frozen=True)
class BrokenLink:
    event_id: int
    problem: str


def verify(batch_size: int = 1000) -> tuple[int, BrokenLink | None]:
    """Walk the chain in id order. Returns (events checked, first broken link or None)."""
    expected_prev = GENESIS_HASH
    checked = 0
    for event in _in_batches(batch_size):
        if event.prev_hash != expected_prev:
            return checked, BrokenLink(
                event.id, "previous-hash mismatch: a row before it was changed or deleted"
            )
        if compute_hash(event) != event.hash:
            return checked, BrokenLink(event.id, "hash mismatch: this row was changed")
        expected_prev = event.hash
        checked += 1
    return checked, None


def _in_batches(batch_size: int) -> Iterator[AuditEvent]:
    last_id = 0
    while True:
        batch = list(AuditEvent.objects.filter(id__gt=last_id).order_by("id")[:batch_size])
        yield from batch
        if len(batch) < batch_size:
            return
        last_id = batch[-1].id
