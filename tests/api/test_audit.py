"""The audit trail is a hash chain: verify_audit passes on an intact chain and names the
first broken link after a row is edited or deleted."""

from __future__ import annotations

import itertools

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from queueing import audit
from queueing.models import AuditEvent

API = "/api/v1/queue"


def make_events(clients) -> list[AuditEvent]:
    admin = clients["admin"]
    admin.post(f"{API}/isolated/pause", {"reason": "inventory"}, format="json")
    admin.post(f"{API}/isolated/resume", {}, format="json")
    admin.post(
        f"{API}/jobs",
        {"task": "queueing.ping", "queue": "isolated", "countdown": 60},
        format="json",
    )
    admin.post(
        f"{API}/jobs/recurring",
        {"name": "n", "task": "queueing.ping", "cron": "0 4 * * *"},
        format="json",
    )
    return list(AuditEvent.objects.order_by("id"))


@pytest.mark.django_db(transaction=True)
def test_api_calls_form_an_intact_chain(clients, capsys):
    events = make_events(clients)
    assert [e.action for e in events] == [
        "queue.pause",
        "queue.resume",
        "job.create",
        "recurring.create",
    ]
    pause = events[0]
    assert (pause.before, pause.after, pause.reason) == (
        {"paused": False},
        {"paused": True},
        "inventory",
    )
    assert events[0].prev_hash == audit.GENESIS_HASH
    assert all(later.prev_hash == earlier.hash for earlier, later in itertools.pairwise(events))
    call_command("verify_audit")
    assert "audit chain intact: 4 events verified" in capsys.readouterr().out


@pytest.mark.django_db(transaction=True)
def test_an_edited_row_is_reported(clients):
    events = make_events(clients)
    AuditEvent.objects.filter(id=events[1].id).update(reason="nothing to see")
    with pytest.raises(CommandError, match=f"broken at event #{events[1].id}: hash mismatch"):
        call_command("verify_audit")


@pytest.mark.django_db(transaction=True)
def test_a_deleted_row_is_reported_at_the_next_one(clients):
    events = make_events(clients)
    AuditEvent.objects.filter(id=events[1].id).delete()
    with pytest.raises(CommandError, match=f"broken at event #{events[2].id}: previous-hash"):
        call_command("verify_audit")


@pytest.mark.django_db(transaction=True)
def test_a_rewritten_chain_tail_is_still_caught_by_its_successor(clients):
    """Editing a row and recomputing its own hash breaks the next row's link."""
    events = make_events(clients)
    forged = AuditEvent.objects.get(id=events[0].id)
    forged.reason = "routine"
    forged.hash = audit.compute_hash(forged)
    forged.save()
    with pytest.raises(CommandError, match=f"broken at event #{events[1].id}"):
        call_command("verify_audit")
